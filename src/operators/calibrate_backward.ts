/**
 * `calibrateBackward`: the calibration backward pass, block by block in
 * reverse with one block's weights resident (docs/DESIGN.md "The shape"): re-read
 * the block, recompute it on its stored input, take the VJP from the upstream
 * gradient, and emit each linear's inputs `x` and output gradients
 * `γ = ∂ℓ/∂y` (zero probes at the linear outputs, docs/DESIGN.md "Models") for
 * KFAC (docs/METHOD.md §2).
 *
 * The loss is the next-token loss of the calibration set; the head runs in
 * chunks small enough for its `[n, T, V]` logits (or, with a streamed
 * vocabulary, `streamedHeadLossGrad` sweeps the head matrix from the file in
 * vocabulary chunks, never holding it or the logits), and the upstream gradient
 * (on disk, in the forward's activation store, read chunk by chunk like the
 * block inputs) is kept as that of the *summed* token loss, so γ needs no rescaling
 * (`gradScale` 1) and `accumulateKfac` divides by the token count. Rows are
 * the positions that have a target (all but each sequence's last).
 *
 * The backward stops at the lowest middle block: the bottom adapter blocks
 * are not compressed, so they are re-read and emitted without a VJP. Blocks
 * come out in order L-1..0, each after its chunks.
 *
 * @example
 * ```ts
 * readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward(), accumulateKfac())
 * ```
 *
 * @module
 */
import { Observable, type OperatorFunction, type Subscriber } from "rxjs";
import type { Tensor } from "@tensorflow/tfjs";
import type { Matrix } from "../linalg/matrix.ts";
import { backwardChunk, type ChunkLinear, headChunk } from "../model/calibration_chunk.ts";
import type { StartingPool } from "../distributed/calibration_pool.ts";
import { tf } from "../tensor/backend.ts";
import type { ActivationRecord, CalibrationEvent, LinearChunkRecord, ModelHandle } from "../records/records.ts";
import { checkpointBoundary } from "../cli/interrupt.ts";
import { type ChunkPlace, chunkTensor, defaultChunk, sequenceChunks, type StoredActivations } from "../io/activation_store.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { type StageEvents, timeStage, timeStageAsync } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";
import type { LinearSpec, WeightMap } from "../model/types.ts";

/** Options of {@link calibrateBackward}. */
export interface CalibrateBackwardOptions {
  /** Sequences per chunk (default: `defaultChunk`, about 512 tokens, fewer for a wide MLP). */
  chunk?: number;
  /** Sequences per head (loss) chunk (default: what keeps the logits under 4 Mi values). */
  headChunk?: number;
  /**
   * Receives the seconds of each stage's work (read, backward) and, once the
   * head's gradient is known (or a resumed build's recorded loss is read), a
   * `head` event with the calibration loss (mean next-token NLL) and its
   * token count.
   */
  events?: StageEvents;
  /** Checked before each block: when aborted, the pass stops there with the signal's reason (src/cli/interrupt.ts). */
  signal?: AbortSignal;
  /**
   * A resumable build: gradients go to its persistent store (`grad-<i>`: at
   * block i's input, `grad-<L>` at the head), the loss to its progress, and
   * blocks whose shards an earlier run wrote are skipped
   * (src/io/build_resume.ts).
   */
  resume?: ResumableBuild;
  /**
   * Runs the head's and the blocks' chunks on this pool of calibration
   * workers, waiting for its start (docs/DISTRIBUTED.md "How a GradOT build
   * uses the cores"); the chunk records, gradients and loss are the same
   * bytes as without.
   */
  pool?: StartingPool;
  /**
   * Told, once the head has run (not when a resumed build's loss is read),
   * each head chunk's summed loss in chunk order: a calibration slice job
   * hands them to the coordinating build, which adds them in the same order
   * as one process (docs/DISTRIBUTED.md "Calibration slices").
   */
  onHeadSums?: (sums: number[]) => void;
}

/** The name of the loss gradient at block `i`'s input in a persistent store (`grad-<L>`: at the head). */
const gradientName = (i: number) => `grad-${i}`;

function collectAll(records: ActivationRecord[]): ActivationRecord[] {
  if (records.length === 0) return records;
  const layers = records[0].model.cfg.layers;
  const sorted = [...records].sort((a, b) => a.index - b.index);
  if (sorted.length !== layers || sorted.some((r, i) => r.index !== i)) {
    throw new Error(
      `calibrateBackward needs the activations of all ${layers} blocks, got blocks ${sorted.map((r) => r.index).join(", ")}`,
    );
  }
  return sorted;
}

/** Logit values one head chunk may hold (the loss and its gradient keep several `[n·T, V]` buffers). */
const HEAD_CHUNK_LOGITS = 1 << 22;

/**
 * Sequences per head chunk, so a chunk's logits `[n, T, V]` stay under
 * {@link HEAD_CHUNK_LOGITS} (at least one sequence): a 50k vocabulary would
 * otherwise outgrow the wasm heap. The head's gradient is stored as that of
 * the summed loss, so head chunks need not match the block chunks.
 */
function defaultHeadChunk(t: number, vocab: number): number {
  return Math.max(1, Math.floor(HEAD_CHUNK_LOGITS / (t * vocab)));
}

/** Calibration positions a streamed head chunk takes: the vocabulary is re-read once per chunk. */
const STREAMED_HEAD_TOKENS = 4096;

/** Sequences per head chunk with a streamed vocabulary (at least one). */
function streamedHeadChunk(t: number): number {
  return Math.max(1, Math.floor(STREAMED_HEAD_TOKENS / t));
}

/**
 * The default head (loss) chunk of `model` on sequences of `length` tokens:
 * the head's chunks sum the loss and scale its gradient, so their bounds fix
 * the bytes; calibration slices must not cut one (docs/DISTRIBUTED.md
 * "Calibration slices").
 */
export function defaultHeadChunkOf(model: ModelHandle, length: number): number {
  return model.vocabulary ? streamedHeadChunk(length) : defaultHeadChunk(length, model.cfg.vocabSize);
}

/**
 * A middle block's chunk records from one chunk's {@link ChunkLinear}s, in
 * their order: a matrix several linears read (q, k and v's input) is handed
 * to each reader, the later ones naming the first in `sharesInputWith`. The
 * backward emits them; a queued build rebuilds them from a slice's files
 * (docs/DISTRIBUTED.md "Calibration slices").
 *
 * @throws Error naming the block and linear when a linear is not one of the block's, or its input came with none
 */
export function chunkRecords(specs: readonly LinearSpec[], index: number, linears: readonly ChunkLinear[], chunk?: number): LinearChunkRecord[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const inputs = new Map<string, Matrix>();
  return linears.map((l): LinearChunkRecord => {
    if (l.x) inputs.set(l.name, l.x);
    const x = inputs.get(l.sharesInputWith ?? l.name);
    const linear = byName.get(l.name);
    if (!x || !linear) throw new Error(`calibrateBackward: block ${index} sent statistics of an unknown linear "${l.name}"`);
    return {
      kind: "chunk",
      index,
      linear,
      x,
      gamma: l.gamma,
      gradScale: 1,
      ...(chunk !== undefined ? { chunk } : {}),
      ...(l.sharesInputWith ? { sharesInputWith: l.sharesInputWith } : {}),
    };
  });
}

async function runBackward(
  records: ActivationRecord[],
  subscriber: Subscriber<CalibrationEvent>,
  options: CalibrateBackwardOptions,
  stopped: () => boolean,
): Promise<void> {
  const all = collectAll(records);
  if (all.length === 0) return;
  const { model, calibration } = all[0];
  const { arch, cfg, split } = model;
  const n = calibration.sequences;
  const t = calibration.length;
  const d = cfg.hidden;
  const chunk = options.chunk ?? defaultChunk(calibration, cfg);
  const { output, store } = all[all.length - 1];
  const { resume } = options;
  const pool = options.pool ? await options.pool.started : undefined;
  const name = (i: number) => (resume ? gradientName(i) : undefined);
  const missing = (what: string) =>
    new Error(`calibrateBackward: ${what}${resume ? ` (the resumable build in "${resume.dir}" is inconsistent: remove it)` : ""}`);

  const load = (i: number) => timeStageAsync(options.events, "read", () => model.loadBlock(i), { block: i });
  /**
   * With a pool, the next block's weights, read while the slots run the
   * chunks before it: the head's, for block L-1, whose read otherwise held
   * up the backward's first chunks (docs/DISTRIBUTED.md "Where 2 slots wait").
   */
  let prefetched: Promise<WeightMap> | undefined;

  /** The chunk records of a middle block's chunk, in `arch.linears` order ({@link chunkRecords}). */
  const specs = arch.linears(cfg);
  const emitChunk = (index: number, linears: ChunkLinear[], chunk: number) => {
    for (const record of chunkRecords(specs, index, linears, chunk)) subscriber.next(record);
  };

  /**
   * With a pool, a block's statistics and record go downstream only once the
   * next block's chunks are on the workers, so the KFAC sums of one block
   * overlap the VJPs of the next; this emits the block held back, if any.
   */
  let heldBack: (() => void) | undefined;
  const release = () => {
    const emit = heldBack;
    heldBack = undefined;
    emit?.();
  };

  const lowestMiddle = split.bottom;

  // Upstream gradient at the last block's output, of the summed token loss
  // (a resumed build whose loss is recorded has it on disk, unless block
  // L-1 is written and no longer needs it).
  const reportLoss = (loss: number) => options.events?.next({ stage: "head", seconds: 0, loss, tokens: n * (t - 1) });
  let upstream: StoredActivations | undefined;
  try {
    if (resume?.loss !== undefined) {
      upstream = store.open(gradientName(cfg.layers), n, t, d);
      reportLoss(resume.loss);
    } else if (!output) {
      throw missing("the last block's activation record has no output");
    } else {
      if (pool && !resume?.isDone(cfg.layers - 1)) {
        prefetched = load(cfg.layers - 1);
        prefetched.catch(() => {}); // awaited at the first block
      }
      upstream = await headGradient(output);
    }
    output?.dispose();
    await backwardBlocks();
  } finally {
    void prefetched?.then(disposeWeights, () => {}); // a stop or an error left it unused
  }
  release();

  /**
   * Sequences per head chunk. Each chunk of a streamed head re-reads the
   * vocabulary, so one thread takes as few chunks as the logits allow, and a
   * pool one chunk per slot, so the slots share the head (a row's gradient is
   * the same bits in any chunk: `streamedLmLossGrad`'s vocabulary chunks do
   * not depend on the rows; only the loss's float64 sum is added in another
   * order, docs/DISTRIBUTED.md "Where 2 slots wait").
   */
  function headChunkSize(): number {
    const fewest = defaultHeadChunkOf(model, t);
    return pool && model.vocabulary ? Math.min(fewest, Math.ceil(n / pool.size)) : fewest;
  }

  /** The head's gradient `[N, T, d]` of the summed loss at the last block's output, in the thread or on the pool. */
  async function headGradient(last: StoredActivations): Promise<StoredActivations> {
    const sums = new Map<number, number>(); // loss sum by head chunk start, added in chunk order below
    const size = options.headChunk ?? headChunkSize();
    const inThread = (a: number, b: number): Tensor => {
      const hidden = chunkTensor(last, a, b); // [n, T, d]
      try {
        const { lossSum, dHidden } = timeStage(options.events, "backward", () =>
          headChunk(arch, cfg, model.outer, hidden, calibration.ids.subarray(a * t, b * t), model.vocabulary?.head));
        sums.set(a, lossSum);
        return dHidden;
      } finally {
        hidden.dispose();
      }
    };
    const gradient = pool
      ? await timeStageAsync(options.events, "backward", () =>
        store.writeAsync(n, t, d, size, async (a, b) => {
          const { lossSum, dHidden } = await pool.head(last.read(a, b), calibration.ids.subarray(a * t, b * t), b - a, t);
          sums.set(a, lossSum);
          return dHidden;
        }, name(cfg.layers)))
      : store.write(n, t, d, size, inThread, name(cfg.layers));
    const ordered = sequenceChunks(n, size).map(([a]) => sums.get(a)!);
    let lossSum = 0;
    for (const sum of ordered) lossSum += sum;
    options.onHeadSums?.(ordered);
    const loss = lossSum / (n * (t - 1));
    resume?.recordLoss(loss);
    reportLoss(loss);
    return gradient;
  }

  async function backwardBlocks(): Promise<void> {
    for (let index = cfg.layers - 1; index >= 0; index--) {
      try {
        await checkpointBoundary(options.signal);
      } catch (e) {
        release(); // the block computed before the stop is written
        throw e;
      }
      if (stopped()) return;
      const record = all[index];
      if (resume?.isDone(index)) {
        // Written by an earlier run: drop what it left, take the gradient below it.
        release();
        record.input?.dispose();
        for (const array of record.linearOutputs?.values() ?? []) array.dispose();
        upstream?.dispose();
        upstream = index > lowestMiddle ? store.open(gradientName(index), n, t, d) : undefined;
        continue;
      }
      const weights = await (prefetched ?? load(index));
      prefetched = undefined;
      let spent: StoredActivations[] = [];
      const middle = record.role === "middle";
      try {
        if (index >= lowestMiddle) {
          const { input } = record;
          if (!input) throw missing(`block ${index}'s activation record has no input`);
          if (!upstream) throw missing(`the gradient at block ${index}'s output is missing`);
          const dOut = upstream;
          const replayed = [...(record.linearOutputs ?? [])]; // [N, T, out] per linear
          spent = [input, dOut, ...replayed.map(([, array]) => array)];
          if (pool) {
            const shared = pool.publish(weights);
            const chunks = new Map<number, ChunkLinear[]>(); // by chunk start
            // The slot reads the chunk's input, upstream gradient and linear outputs and writes its input gradient itself.
            const run = async (a: number, b: number, out?: ChunkPlace): Promise<void> => {
              const replay = replayed.map(([linear, array]) => ({ name: linear, place: array.place(a, b) })); // [n, T, out] each
              chunks.set(a, await pool.backward(shared, index, middle, { n: b - a, t, x: input.place(a, b), dy: dOut.place(a, b), replay, out }));
            };
            // Every chunk goes to the workers now; the block before is emitted while they work.
            const file = name(index); // the gradient's, in a persistent store
            const gradient = timeStageAsync(options.events, "backward", () =>
              index > lowestMiddle
                ? store.writeEachAt(n, t, [d], chunk, (a, b, [out]) => run(a, b, out), file === undefined ? undefined : [file]).then(([stored]) => stored)
                : Promise.all(sequenceChunks(n, chunk).map(([a, b]) => run(a, b))).then(() => undefined), { block: index });
            gradient.catch(() => {}); // awaited below, once the block before is emitted
            if (index > 0 && !resume?.isDone(index - 1)) {
              prefetched = load(index - 1);
              prefetched.catch(() => {}); // awaited at the next block
            }
            release();
            upstream = await gradient;
            if (!middle) pool.retire(shared); // every chunk answered; a middle block's compression parts read it first
            const done = spent;
            heldBack = () => {
              for (const [a] of sequenceChunks(n, chunk)) emitChunk(index, chunks.get(a)!, a);
              chunks.clear();
              subscriber.next({ kind: "block", model, index, role: record.role, weights, ...(middle ? { published: shared } : {}) });
              // Its shard may be written later (compressed on the pool): keep what redoing it needs till then.
              const dispose = () => done.forEach((array) => array.dispose());
              if (resume) resume.whenWritten(index, dispose);
              else dispose();
            };
            continue;
          }
          // The gradient at the block input, `[n, T, d]`, for sequences [a, b).
          const step = (a: number, b: number): Tensor => {
            const x = chunkTensor(input, a, b); // [n, T, d]
            const dy = chunkTensor(dOut, a, b); // [n, T, d]
            const replay = replayed.length > 0 ? new Map(replayed.map(([linear, array]) => [linear, chunkTensor(array, a, b)])) : undefined; // [n, T, out] each
            try {
              const { dx, linears } = timeStage(options.events, "backward", () =>
                backwardChunk(arch, cfg, weights, x, dy, middle, index, replay), { block: index });
              emitChunk(index, linears, a);
              return dx;
            } finally {
              tf.dispose([x, dy, ...(replay?.values() ?? [])]);
            }
          };
          if (index > lowestMiddle) upstream = store.write(n, t, d, chunk, step, name(index));
          else for (const [a, b] of sequenceChunks(n, chunk)) step(a, b).dispose();
        }
      } catch (e) {
        disposeWeights(weights);
        throw e;
      }
      release();
      // Downstream writes the block's shard before next() returns; only then
      // are its input and output gradient no longer needed to redo it.
      subscriber.next({ kind: "block", model, index, role: record.role, weights });
      for (const array of spent) array.dispose();
    }
  }
}

/**
 * Collects the forward's activation records, then runs the backward from the
 * head down and emits, per block (L-1..0), a chunk record per linear and
 * chunk (middle blocks only) followed by the block with its reloaded weights.
 * Takes the records' activation store: each array is deleted once read for
 * the last time, and the store is closed when the backward completes, errors
 * or is unsubscribed.
 */
export function calibrateBackward(
  options: CalibrateBackwardOptions = {},
): OperatorFunction<ActivationRecord, CalibrationEvent> {
  return (source) =>
    new Observable<CalibrationEvent>((subscriber) => {
      const records: ActivationRecord[] = [];
      let stopped = false;
      const subscription = source.subscribe({
        next: (record) => records.push(record),
        error: (e) => subscriber.error(e),
        complete: () => {
          runBackward(records, subscriber, options, () => stopped).then(
            () => subscriber.complete(),
            (e) => subscriber.error(e),
          );
        },
      });
      return () => {
        stopped = true;
        subscription.unsubscribe();
        for (const store of new Set(records.map((r) => r.store))) store.close();
      };
    });
}
