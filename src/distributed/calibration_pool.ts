/**
 * The calibration pool of a data-parallel GradOT build (docs/DISTRIBUTED.md
 * "All cores of one machine"): the calibration passes send it chunks (a
 * block's forward, the head, a block's VJP), KFAC sums and whole blocks to
 * score and compress. A pool of `n` slots is `n - 1` worker threads
 * (src/distributed/calibration_worker.ts) and the building thread itself
 * (a `LocalSlot`; `SlotPool`, src/distributed/slot_pool.ts): all serve requests with the same handler
 * (`calibrationHandler`), so a result does not depend on the slot, and the
 * building thread, whose own work (reading, writing, routing) is light,
 * uses its core too instead of a third isolate competing for two cores.
 * Each request is posted at once, to the worker with the least work queued
 * or, when every worker has more, to this thread, so all slots keep busy; a
 * request's work is the seconds the last requests of its kind took to serve
 * (every reply says), so a block's compression weighs as several chunks.
 *
 * What keeps one order, so the emulator's bytes do not depend on the number
 * of workers: the chunk boundaries (the same for any count), the activation
 * store (chunks appended in chunk order), the loss (summed in chunk order,
 * in the building thread) and the KFAC sums (each linear's on one owning
 * worker, `kfacOwners`, every chunk added in chunk order, `poolKfac`).
 *
 * @module
 */
import type { ChunkLinear } from "../model/calibration_chunk.ts";
import type { WeightMap } from "../model/types.ts";
import type { LinearChunkRecord, ModelHandle } from "../records/records.ts";
import { currentBackend } from "../tensor/backend.ts";
import { type CalibrationReply, type CalibrationRequest, calibrationHandler, servedFirst } from "./calibration_handler.ts";
import { movableBuffers, type SharedWeights, shareWeights } from "./shared_weights.ts";
import { type BlockJobValue, type CompressedBlockValue, statsFromValue } from "./block_files.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import { SlotPool } from "./slot_pool.ts";
import { CalibrationThreads } from "./calibration_threads.ts";
import type { ChunkPlace } from "../io/activation_store.ts";
import type { ShardDtype, ShardMeta, ShardTensor } from "../io/shard_schema.ts";
import type { BlockShardWritten, OuterShardWritten } from "../operators/write_shards.ts";

type Of<K extends CalibrationReply["kind"]> = Extract<CalibrationReply, { kind: K }>;

/**
 * Retired publications a pool keeps for the next blocks': a middle block's
 * stays in use till its compression parts are answered, one or two blocks
 * after its backward, so about three are in use at once.
 */
const RETIRED_PUBLICATIONS = 4;

/**
 * A shard write's seconds per MB before the first is measured (encoding,
 * SHA-256 and the file's write: 0.15 s for a 28 MB OPT-125M block on the
 * development machine). The mean of the other kinds, the default for a new
 * kind, held the head's 1.3 s, and the next block's chunks all went to the
 * building thread while the worker thread idled behind two writes weighed
 * so (docs/DISTRIBUTED.md "Where 2 slots wait").
 */
const SHARD_SECONDS_PER_MB = 0.006;

/** A pool of calibration slots for one model: worker threads and this thread. */
export class CalibrationPool {
  readonly #slots: SlotPool<CalibrationRequest, CalibrationReply>;
  /** Buffers of retired publications, for the next blocks' (fresh memory costs page faults: src/linalg/scratch_arrays.ts). */
  readonly #retired: SharedArrayBuffer[] = [];
  /** Seconds requests took to serve, by kind (a KFAC request's by owner), smoothed: the weights of the slots' queued work. */
  readonly #seconds = new Map<string, number>();
  /**
   * Seconds per MB the shard writes took, smoothed as {@link #seconds} are: a
   * shard is weighed by its size. Kept apart from them, which are seconds per
   * request, and whose mean a kind not seen yet is first weighed by.
   */
  #shardSecondsPerMb: number | undefined;

  private constructor(slots: SlotPool<CalibrationRequest, CalibrationReply>) {
    this.#slots = slots;
  }

  /**
   * Readies `size - 1` workers for `model` (`threads`, started here unless
   * they were started ahead) and this thread as the last slot, each with
   * the model's outer weights (for the head) and this thread's tensor
   * backend. When `model` streams its vocabulary, each worker
   * opens `model.source` to stream the head matrix the same way, and this
   * thread's slot reads `model`'s own head rows.
   *
   * @throws Error when a worker cannot start, or `size` is below 2
   */
  static async start(model: ModelHandle, size: number, threads: CalibrationThreads = new CalibrationThreads(size)): Promise<CalibrationPool> {
    if (threads.size !== size) throw new Error(`A calibration pool of ${size} slots was handed threads started for ${threads.size}`);
    const serve = calibrationHandler(); // this thread's slot
    const pool = new CalibrationPool(SlotPool.over(await threads.workers, serve, servedFirst));
    try {
      const outer = shareWeights(model.outer);
      const init: CalibrationRequest = {
        kind: "init",
        config: model.cfg.raw,
        split: model.split,
        backend: currentBackend(),
        outer,
        ...(model.vocabulary ? { streamedHead: model.source, sourceHash: model.sourceHash } : {}),
      };
      const workers = Promise.all(Array.from({ length: size - 1 }, (_, k) => pool.#call(k, init)));
      workers.catch(() => {}); // awaited below
      // This thread's slot at once, not after the turn of the event loop its requests wait for: none is queued yet.
      await serve({ ...init, ...(model.vocabulary ? { vocabulary: model.vocabulary } : {}) });
      await workers;
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  /** Number of slots: the workers and this thread. */
  get size(): number {
    return this.#slots.size;
  }

  /** A block's weights, copied once for every worker to read (into a retired publication's buffer of the same size, if any). */
  publish(weights: WeightMap): SharedWeights {
    return shareWeights(weights, (bytes) => {
      const k = this.#retired.findIndex((buffer) => buffer.byteLength === bytes);
      return k >= 0 ? this.#retired.splice(k, 1)[0] : undefined;
    });
  }

  /**
   * Hands back a publication whose requests have all been answered: every
   * slot that read it copied its weights onto its own heap at its first
   * request, so the buffer may hold a later block's. Keeps at most
   * {@link RETIRED_PUBLICATIONS}.
   */
  retire(block: SharedWeights): void {
    if (this.#retired.length < RETIRED_PUBLICATIONS) this.#retired.push(block.buffer);
  }

  /**
   * Has a slot run the block on the `n` sequences of `T` tokens at `x` in
   * the activation store, reading them itself, and write its output
   * `[n, T, d]`, then the outputs `[n, T, out]` of the named `linears`
   * (`forwardChunk`), at `targets` in the store's files
   * (`ActivationStore.writeEachAt`): no chunk's values pass through this
   * thread.
   */
  async forward(block: SharedWeights, x: ChunkPlace, n: number, t: number, linears: readonly string[], targets: ChunkPlace[]): Promise<void> {
    const request: CalibrationRequest = { kind: "forward", block, x: { n, t, place: x }, linears: [...linears], targets };
    await this.#offer<"forward">(request);
  }

  /** The head's summed loss and gradient on the last block's output `hidden` (`[n, T, d]`) for token ids `ids` (`[n, T]`). */
  async head(hidden: Float32Array, ids: Int32Array, n: number, t: number): Promise<{ lossSum: number; dHidden: Float32Array }> {
    const own = ids.slice(); // its own buffer, moved to the worker
    return await this.#run<"head">({ kind: "head", hidden: { n, t, data: hidden }, ids: own }, movableBuffers([hidden, own]));
  }

  /**
   * The block's VJP on a chunk (`backwardChunk`), the `n` sequences of `T`
   * tokens at `x` and their upstream gradient at `dy` in the activation
   * store, which the slot reads itself: with `probes`, every linear's KFAC
   * inputs. `replay` places the forward's linear outputs on the chunk
   * (`[n, T, out]` each), which its recomputed forward takes instead of
   * multiplying again. The slot writes the input gradient `[n, T, d]` at
   * `out` in the store (`ActivationStore.writeEachAt`), if given.
   */
  async backward(
    block: SharedWeights,
    index: number,
    probes: boolean,
    chunk: { n: number; t: number; x: ChunkPlace; dy: ChunkPlace; replay?: ReadonlyArray<{ name: string; place: ChunkPlace }>; out?: ChunkPlace },
  ): Promise<ChunkLinear[]> {
    const { n, t } = chunk;
    const request: CalibrationRequest = {
      kind: "backward",
      block,
      index,
      probes,
      x: { n, t, place: chunk.x },
      dy: { n, t, place: chunk.dy },
      replay: (chunk.replay ?? []).map(({ name, place }) => ({ name, chunk: { n, t, place } })),
      ...(chunk.out ? { out: chunk.out } : {}),
    };
    return (await this.#offer<"backward">(request)).linears;
  }

  /**
   * Adds one chunk's `x`, `γ` of the linears worker `k` owns (`kfacOwners`)
   * to its KFAC sums; their arrays are moved to it. Requests to one worker
   * run in the order posted, so its sums take the chunks in chunk order.
   */
  async kfac(k: number, linears: Array<Omit<LinearChunkRecord, "kind" | "x"> & { x?: Matrix }>): Promise<void> {
    await this.#call(k, { kind: "kfac", linears }, movableBuffers(linears));
  }

  /** Slot `k`'s finalized KFAC factors of block `index` (`BlockKfacSums.finalize`), by linear. */
  async finalizeKfac(k: number, index: number): Promise<Map<string, KfacFactors>> {
    const reply = (await this.#call(k, { kind: "kfac-finalize", index })) as Of<"kfac-finalize">;
    return statsFromValue(reply.stats);
  }

  /**
   * Scores and compresses a block job (`blockJobValue`; its arrays are moved
   * to the worker, not copied); resolves with the compressed block's values.
   */
  async compress(job: BlockJobValue): Promise<CompressedBlockValue> {
    return (await this.#run<"compress">({ kind: "compress", job }, movableBuffers(job))).block;
  }

  /**
   * Has the first worker thread write the model's outer shard to `path`
   * with `meta` in `dtype` (`writeOuterShardFile`: every slot holds the
   * outer weights and opens the vocabulary, so the bytes are this thread's);
   * resolves with what it wrote and the seconds it took
   * (`WriteShardsOptions.outerElsewhere`). Sent to a worker thread, not
   * posted: this thread has its own writes and reads besides its slot's
   * requests (docs/DISTRIBUTED.md "Where 2 slots wait").
   */
  async writeOuter(path: string, meta: ShardMeta, dtype: ShardDtype): Promise<OuterShardWritten> {
    const { bytes, sha256, tensors, seconds } = await this.#call(0, { kind: "outer", path, meta, dtype }) as Of<"outer">;
    return { bytes, sha256, tensors, seconds };
  }

  /**
   * Has the slot with the least work queued write a block's shard of
   * `tensors` (their arrays moved to it) to `path` with `meta` in `dtype`
   * (`writeShardFile`); resolves with what it wrote and the seconds it took
   * (`WriteShardsOptions.blocksElsewhere`). Posted like a chunk, so it
   * waits behind the chunks this thread's slot was sent before it, instead
   * of going ahead of them in this thread (docs/DISTRIBUTED.md "Where 2
   * slots wait").
   */
  async writeBlock(path: string, meta: ShardMeta, tensors: ShardTensor[], dtype: ShardDtype): Promise<BlockShardWritten> {
    const megabytes = tensors.reduce((n, t) => n + t.data.byteLength, 0) / 1e6;
    const request: CalibrationRequest = { kind: "shard", path, meta, dtype, tensors };
    const cost = megabytes * (this.#shardSecondsPerMb ?? SHARD_SECONDS_PER_MB);
    const { bytes, sha256, seconds } = await this.#slots.post(request, movableBuffers(tensors), cost) as Of<"shard">;
    this.#shardSecondsPerMb = smoothed(this.#shardSecondsPerMb, seconds / Math.max(megabytes, 1e-6));
    return { bytes, sha256, seconds };
  }

  /** Terminates the workers and releases what this thread's slot holds. */
  async close(): Promise<void> {
    await this.#slots.close();
    await this.#slots.call(this.#slots.size - 1, { kind: "close" }).catch(() => {});
  }

  /** Sends `request` to slot `k` (the last is this thread's), weighed by what such requests to `k` took. */
  async #call(k: number, request: CalibrationRequest, transfer: readonly ArrayBuffer[] = []): Promise<CalibrationReply> {
    const key = request.kind === "kfac" ? `kfac ${k}` : request.kind; // owners sum different linears
    return this.#learn(key, await this.#slots.call(k, request, transfer, this.#cost(key)));
  }

  /** Posts `request` to the slot with the least work queued, weighed by what requests of its kind took (`SlotPool.post`). */
  async #run<K extends CalibrationReply["kind"]>(request: CalibrationRequest, transfer: readonly ArrayBuffer[]): Promise<Of<K>> {
    return this.#learn(request.kind, await this.#slots.post(request, transfer, this.#cost(request.kind))) as Of<K>;
  }

  /**
   * Offers `request` to the worker thread with the least work queued and to
   * this thread's slot, the first free serving it (`SlotPool.offer`),
   * weighed by what requests of its kind took: a chunk, which moves nothing.
   */
  async #offer<K extends CalibrationReply["kind"]>(request: CalibrationRequest): Promise<Of<K>> {
    return this.#learn(request.kind, await this.#slots.offer(request, this.#cost(request.kind))) as Of<K>;
  }

  /**
   * The seconds a request `key` is expected to take: the last ones served,
   * smoothed; before the first, the mean of the kinds seen (0.1 s before any).
   */
  #cost(key: string): number {
    const known = this.#seconds.get(key);
    if (known !== undefined) return known;
    const all = [...this.#seconds.values()];
    return all.length > 0 ? all.reduce((a, b) => a + b) / all.length : 0.1;
  }

  /** Takes in the seconds a reply's slot spent on a request `key`; returns the reply. */
  #learn(key: string, reply: CalibrationReply): CalibrationReply {
    this.#seconds.set(key, smoothed(this.#seconds.get(key), reply.seconds));
    return reply;
  }
}

/** A learned cost after one more measurement: the measurement alone at first, then averaged with the estimate before. */
function smoothed(before: number | undefined, measured: number): number {
  return before === undefined ? measured : (before + measured) / 2;
}

/**
 * A calibration pool being started (worker threads take seconds to load
 * their modules and backend): the forward runs its blocks in the calling
 * thread until `ready` is set, then on the pool, so the start overlaps the
 * first blocks' work; the chunks' bytes are the same either way.
 */
export class StartingPool {
  /** The pool once started. */
  ready?: CalibrationPool;
  /** Resolves with the pool (rejects with the start's error). */
  readonly started: Promise<CalibrationPool>;
  /** Number of workers being started. */
  readonly size: number;

  /** Readies `size` slots for `model` ({@link CalibrationPool.start}) on `threads` if given; `started` settles when they are up. */
  constructor(model: ModelHandle, size: number, threads?: CalibrationThreads) {
    this.size = size;
    this.started = CalibrationPool.start(model, size, threads).then((pool) => (this.ready = pool));
    this.started.catch(() => {}); // reported to whoever awaits it
  }

  /** Closes the pool once started (nothing when the start failed). */
  close(): Promise<void> {
    return this.started.then((pool) => pool.close(), () => {});
  }
}
