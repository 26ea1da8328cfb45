/**
 * Where gradients are computed: in this thread, or data-parallel over a pool
 * of worker threads (docs/DESIGN.md "Scale": one machine, a worker pool).
 *
 * Data parallelism: each of N replicas (src/train/grad_worker.ts) takes a
 * contiguous share of the batch rows; the main thread averages their
 * gradients, weighting each by its share of rows (every row has the same
 * `T − 1` targets, so this is exactly the gradient of the whole batch's mean
 * loss), then clips and applies AdamW itself and publishes the new parameters.
 *
 * Why the main thread updates rather than every replica: the bytes moved are
 * the same either way (gradients in, parameters or averaged gradients out),
 * but a single copy of the optimizer moments (2× the parameters) lives where
 * checkpoints are written, instead of N copies that must stay identical.
 * The update is an element-wise pass, small next to a forward and backward.
 * Parameters and gradients travel through `SharedArrayBuffer`s, not messages:
 * one parameter buffer every replica reads, one gradient slot per part of
 * the batch; messages carry only the token ids and a sequence number.
 *
 * The same machinery ({@link startReplicas}, {@link weightedSum}, the slot
 * side in src/train/replica.ts) serves adapter tuning
 * (src/train/tune_engine.ts), whose parts are fixed micro-batches that any
 * slot may compute: part `j` always lands in gradient slot `j` and the slots
 * are summed in part order, so the sum does not depend on which thread
 * computed what (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * @module
 */
import type { Transferable } from "node:worker_threads";
import { currentBackend } from "../tensor/backend.ts";
import { SlotPool } from "../distributed/slot_pool.ts";
import { sliceBatch, type TokenBatch } from "./batches.ts";
import { batchLoss, lossAndGradients, type TrainModel } from "./gradients.ts";
import type { PretrainSetup } from "./grad_worker.ts";
import { type Replica, replicaHandler, type ReplicaReply, type ReplicaRequest } from "./replica.ts";

/** Computes batch losses and gradients at given parameters. */
export interface GradientEngine {
  /** Replicas computing in parallel (0: in this thread). */
  readonly workers: number;
  /** Writes the gradient of the batch's mean loss at `params` into `grads`; resolves with that loss. */
  gradients(params: Float32Array, batch: TokenBatch, grads: Float32Array): Promise<number>;
  /** The batch's mean loss at `params`. */
  loss(params: Float32Array, batch: TokenBatch): Promise<number>;
  /** Releases the workers, if any. */
  close(): Promise<void>;
}

/**
 * An engine computing everything in the calling thread, `microBatch` rows
 * per forward/backward pass (see {@link lossAndGradients}).
 */
export function inProcessEngine(model: TrainModel, microBatch: number): GradientEngine {
  return {
    workers: 0,
    gradients: (params, batch, grads) => Promise.resolve(lossAndGradients(model, params, batch, grads, microBatch)),
    loss: (params, batch) => Promise.resolve(batchLoss(model, params, batch, microBatch)),
    close: () => Promise.resolve(),
  };
}

/** Contiguous row ranges `[from, to)` splitting `rows` over at most `parts` replicas as evenly as possible. */
export function splitRows(rows: number, parts: number): Array<[number, number]> {
  const n = Math.min(rows, parts);
  return Array.from({ length: n }, (_, k) => [Math.floor((k * rows) / n), Math.floor(((k + 1) * rows) / n)]);
}

/**
 * `Σ_j weights[j] · parts[j]` into `sum`, in part order (`sum` is zeroed
 * first): the one place data-parallel gradients are combined, so a sum is
 * the same bits wherever its parts were computed (docs/DISTRIBUTED.md "How tune and eval use the cores").
 */
export function weightedSum(parts: readonly Float32Array[], weights: readonly number[], sum: Float32Array): void {
  if (parts.length !== weights.length) throw new Error(`Got ${weights.length} weights for ${parts.length} gradients`);
  for (const part of parts) checkAddable(part, sum);
  if (parts.length === 1) return sumOfOne(parts[0], weights[0], sum);
  if (parts.length === 2) return sumOfTwo(parts[0], weights[0], parts[1], weights[1], sum);
  sum.fill(0);
  parts.forEach((part, j) => addScaled(sum, weights[j], part));
}

/**
 * `sum = 0 + w · a` in one pass: {@link weightedSum} of one part, each value
 * rounded as `sum.fill(0)` then {@link addScaled} round it (a JS double
 * stored into a Float32Array rounds once), without the zeroing pass. A
 * pretraining step's gradient sum is serial work between the replicas'
 * passes, so a pass less is a shorter step.
 */
function sumOfOne(a: Float32Array, wa: number, sum: Float32Array): void {
  for (let i = 0; i < sum.length; i++) sum[i] = 0 + wa * a[i];
}

/** `sum = (0 + wa · a) + wb · b` in one pass, each partial sum rounded to float32 as two {@link addScaled} passes round it. */
function sumOfTwo(a: Float32Array, wa: number, b: Float32Array, wb: number, sum: Float32Array): void {
  for (let i = 0; i < sum.length; i++) sum[i] = Math.fround(0 + wa * a[i]) + wb * b[i];
}

/** `sum += w · part`, element by element: the step of {@link weightedSum}, for a caller adding its parts one by one with the same bits (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function addScaled(sum: Float32Array, w: number, part: Float32Array): void {
  checkAddable(part, sum);
  for (let i = 0; i < sum.length; i++) sum[i] += w * part[i];
}

/** Throws unless `part` has `sum`'s length (one gradient adds into another value by value). */
function checkAddable(part: Float32Array, sum: Float32Array): void {
  if (part.length !== sum.length) throw new Error(`A gradient of ${part.length} values cannot add into ${sum.length}`);
}

/** Options of {@link startReplicas}: the slots, the shared memory's size and where parts go (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface ReplicaOptions<Setup, Part> {
  /** Worker threads to start. */
  workers: number;
  /** Values in the parameter vector. */
  size: number;
  /** Gradient slots: the most parts a round has. */
  slots: number;
  /** Each worker's setup (sent once, structured-cloned). */
  setup: Setup;
  /** When set, the calling thread is a slot too, its replica built from `local.setup` by `local.build`. */
  local?: { build: (setup: Setup) => Replica<Part> | Promise<Replica<Part>>; setup: Setup };
  /**
   * Where each part goes: `"fixed"`, part `k` to slot `k` (the pretrainer's
   * row shares, one per slot); `"least-busy"`, each at once to the slot with
   * the fewest pending (`SlotPool.post`).
   */
  routing: "fixed" | "least-busy";
  /** The buffers to move with a part (none: it is copied). */
  transfer?: (part: Part) => Transferable[];
}

/** Replicas of one model on a pool of slots, sharing its parameters (module notes; docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface Replicas<Part> {
  /** Slots computing in parallel. */
  readonly size: number;
  /**
   * Publishes `params` and computes every part's mean loss (and, for
   * `gradients`, its gradient into slot `j` for part `j`); resolves with the
   * losses and the gradient slots in part order (views into shared memory,
   * valid until the next round).
   */
  round(kind: "gradients" | "loss", params: Float32Array, parts: readonly Part[]): Promise<{ losses: number[]; grads: Float32Array[] }>;
  /** Releases the workers. */
  close(): Promise<void>;
}

/**
 * Starts the replicas of a model on `options.workers` worker threads running
 * `entry` (a module serving `replicaHandler`, src/train/replica.ts) and, with
 * `options.local`, on the calling thread: the pretrainer's and the tuner's
 * one data-parallel machinery (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * @throws Error when a worker cannot start or build its replica
 */
export async function startReplicas<Setup, Part>(entry: URL, options: ReplicaOptions<Setup, Part>): Promise<Replicas<Part>> {
  const { size, slots } = options;
  if (!Number.isInteger(slots) || slots < 1) throw new Error(`Gradient slots must be a positive integer, got ${slots}`);
  const memory = {
    params: new SharedArrayBuffer(size * 4),
    grads: new SharedArrayBuffer(slots * size * 4),
    sync: new SharedArrayBuffer(4 * (1 + slots)),
  };
  const shared = new Float32Array(memory.params);
  const gradSlots = Array.from({ length: slots }, (_, j) => new Float32Array(memory.grads, j * size * 4, size));
  const sync = new Int32Array(memory.sync);
  type Req = ReplicaRequest<Setup, Part>;
  const pool = await SlotPool.start<Req, ReplicaReply>(entry, {
    workers: options.workers,
    local: options.local && replicaHandler(options.local.build),
  });
  try {
    const workers = options.workers;
    await pool.broadcast((k) => ({ kind: "init", setup: k < workers ? options.setup : options.local!.setup, memory }));
  } catch (e) {
    await pool.close();
    throw e;
  }
  return {
    size: pool.size,
    async round(kind, params, parts) {
      if (params.length !== size) throw new Error(`Parameter vector holds ${params.length} values, the model has ${size}`);
      if (parts.length > slots) throw new Error(`A round of ${parts.length} parts exceeds the ${slots} gradient slots`);
      shared.set(params);
      const seq = Atomics.add(sync, 0, 1) + 1;
      const replies = await Promise.all(parts.map((part, j) => {
        const request: Req = { kind, seq, slot: j, part };
        const transfer = options.transfer?.(part) ?? [];
        return options.routing === "fixed" ? pool.call(j, request, transfer) : pool.post(request, transfer);
      }));
      if (kind === "gradients") {
        parts.forEach((_, j) => {
          if (Atomics.load(sync, 1 + j) !== seq) throw new Error(`Part ${j}'s gradient of round ${seq} was not written`);
        });
      }
      return { losses: replies.map((r) => r.loss), grads: gradSlots.slice(0, parts.length) };
    },
    close: () => pool.close(),
  };
}

/**
 * Starts `workers` replicas of `model` (each parses `model.cfg.raw`, the
 * config.json object) and returns an engine over them. The replicas use this
 * thread's tensor backend and run `microBatch` rows per forward/backward pass;
 * replica `k` takes the `k`-th contiguous share of each batch's rows
 * ({@link splitRows}), and the shares' gradients are averaged by rows.
 */
export async function startDataParallel(
  model: TrainModel,
  workers: number,
  microBatch: number,
): Promise<GradientEngine> {
  const size = model.layout.size;
  const replicas = await startReplicas<PretrainSetup, TokenBatch>(new URL("./grad_worker.ts", import.meta.url), {
    workers,
    size,
    slots: workers,
    setup: { config: model.cfg.raw, backend: currentBackend(), microBatch },
    routing: "fixed",
    transfer: (part) => [part.ids.buffer as ArrayBuffer],
  });

  /** Publishes `params` and asks each replica for its share of `batch`. */
  const scatter = async (kind: "gradients" | "loss", params: Float32Array, batch: TokenBatch) => {
    const parts = splitRows(batch.batch, workers).map(([from, to]) => {
      const part = sliceBatch(batch, from, to);
      return { ...part, ids: part.ids.slice() }; // its own buffer, moved to the worker
    });
    const weights = parts.map((p) => p.batch / batch.batch);
    const { losses, grads } = await replicas.round(kind, params, parts);
    return { loss: losses.reduce((sum, l, k) => sum + weights[k] * l, 0), weights, grads };
  };

  return {
    workers,
    async gradients(params, batch, grads) {
      if (grads.length !== size) throw new Error(`Gradient buffer holds ${grads.length} values, the model has ${size}`);
      const { loss, weights, grads: slots } = await scatter("gradients", params, batch);
      weightedSum(slots, weights, grads);
      return loss;
    },
    async loss(params, batch) {
      return (await scatter("loss", params, batch)).loss;
    },
    close: () => replicas.close(),
  };
}
