/**
 * `calibrateForward`: the calibration forward pass over the original model
 * (docs/METHOD.md §2: `g` and the curvature come from one calibration forward +
 * backward). Each block's input activations are kept on disk in an
 * {@link ActivationStore}, written chunk by chunk, for the blocks the backward
 * recomputes (from `model.split.bottom` up); its weights are released as soon
 * as its output is computed, so one block and one chunk of activations are
 * resident at a time (docs/DESIGN.md "The shape").
 *
 * Processing is synchronous inside `next`, so an upstream `readCheckpoint`
 * loads the next block only after this one is done.
 *
 * @example
 * ```ts
 * readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward())
 * ```
 *
 * @module
 */
import { concatMap, defer, finalize, map, type OperatorFunction, tap } from "rxjs";
import { setImmediate } from "node:timers";
import { tf } from "../tensor/backend.ts";
import { gatherRows } from "../model/vocabulary.ts";
import type { ActivationRecord, BlockRecord, CalibrationSet, ModelHandle } from "../records/records.ts";
import {
  ActivationStore,
  type ArraysInProgress,
  chunkIds,
  chunkTensor,
  defaultChunk,
  sequenceChunks,
  type StoredActivations,
} from "../io/activation_store.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";
import { forwardChunk } from "../model/calibration_chunk.ts";
import { outputWidth } from "../model/shapes.ts";
import type { WeightMap } from "../model/types.ts";
import type { CalibrationPool, StartingPool } from "../distributed/calibration_pool.ts";

/** Options of {@link calibrateForward}. */
export interface CalibrateForwardOptions {
  /** The calibration token ids (N sequences of T tokens). */
  calibration: CalibrationSet;
  /** Sequences per chunk (default: `defaultChunk`, about 512 tokens, fewer for a wide MLP). */
  chunk?: number;
  /** Receives the seconds of each block's forward work. */
  events?: StageEvents;
  /**
   * A resumable build: the pass writes to its persistent store, named by
   * block (`act-<i>`: block i's input), and skips the blocks whose output an
   * earlier run completed (src/io/build_resume.ts).
   */
  resume?: ResumableBuild;
  /**
   * Runs each block's chunks on this pool of calibration workers once it
   * has started, the blocks before in this thread (docs/DISTRIBUTED.md "How
   * a GradOT build uses the cores"); the stored activations are the same
   * bytes either way. Pass the same `pace` to the `readCheckpoint`
   * upstream, so it reads one block ahead, not all.
   */
  pool?: StartingPool;
  /** Paces the upstream `readCheckpoint` when a `pool` makes this pass asynchronous. */
  pace?: BlockPace;
  /**
   * Also store the outputs of every linear of the blocks the backward
   * recomputes (`lin-<i>-<linear>` in a persistent store), so its VJP replays
   * them instead of multiplying again (`BlockOptions.replay`; docs/GRADOT.md
   * "Benchmarks"), in this thread or on the `pool`. Disk, not
   * memory: Σ out floats per token and block, each block's deleted once its
   * backward is done. Default false.
   */
  linearOutputs?: boolean;
}

/**
 * Lets `readCheckpoint` read a block only while fewer than two are loaded
 * and not yet through the forward: with a worker pool the forward is
 * asynchronous, and an unpaced reader would load the whole model ahead of it
 * (docs/DESIGN.md "Scale": one block resident, one read ahead).
 */
export class BlockPace {
  #loaded = 0;
  #wake: Array<() => void> = [];

  /** Resolves when the next block may be read (`readCheckpoint`'s `pace`). */
  readonly next = async (): Promise<void> => {
    while (this.#loaded >= 2) await new Promise<void>((wake) => this.#wake.push(wake));
    this.#loaded++;
  };

  /** Marks a read block as through the forward. */
  done(): void {
    this.#loaded--;
    this.#wake.shift()?.();
  }
}

/**
 * The calibration set's embeddings `[N, T, d]`, stored chunk by chunk. With
 * a streamed vocabulary only the rows of the calibration's distinct tokens
 * are read, into a compact table the architecture embeds remapped ids with.
 */
function embedCalibration(
  store: ActivationStore,
  model: ModelHandle,
  calibration: CalibrationSet,
  chunk: number,
  name?: string,
): StoredActivations {
  const { arch, cfg } = model;
  const n = calibration.sequences;
  const t = calibration.length;
  if (!model.vocabulary) {
    return store.write(n, t, cfg.hidden, chunk, (a, b) =>
      tf.tidy(() => arch.embed(model.outer, chunkIds(calibration, a, b), cfg)), name); // [n, T, d]
  }
  const { embedding } = model.vocabulary;
  const { table, remapped } = gatherRows(embedding, calibration.ids);
  const compact = tf.tensor2d(table, [table.length / cfg.hidden, cfg.hidden]); // [U, d]
  const outer = new Map(model.outer).set(embedding.name, compact);
  const ids = { ...calibration, ids: remapped };
  try {
    return store.write(n, t, cfg.hidden, chunk, (a, b) => tf.tidy(() => arch.embed(outer, chunkIds(ids, a, b), cfg)), name); // [n, T, d]
  } finally {
    compact.dispose();
  }
}

/** The name of block `i`'s input in a persistent store (`act-<L>`: the last block's output). */
export const activationName = (i: number) => `act-${i}`;

/** The name of block `i`'s linear `linear`'s output in a persistent store. */
const linearOutputName = (i: number, linear: string) => `lin-${i}-${linear}`;

/** Each linear of a block with its stored output width (pruned or factored weights included). */
function linearWidths(model: ModelHandle, weights: WeightMap): Array<[string, number]> {
  return model.arch.linears(model.cfg).map((spec) => [spec.name, outputWidth(weights, spec)]);
}

/** A resumed block's stored linear outputs, when every one was completed. */
function openLinearOutputs(
  store: ActivationStore,
  index: number,
  linears: Array<[string, number]>,
  n: number,
  t: number,
): Map<string, StoredActivations> | undefined {
  const arrays = new Map<string, StoredActivations>();
  for (const [name, width] of linears) {
    const array = store.open(linearOutputName(index, name), n, t, width);
    if (!array) {
      for (const a of arrays.values()) a.dispose();
      return undefined;
    }
    arrays.set(name, array);
  }
  return arrays;
}

/**
 * The first block a resumed pass computes: none (L) once the backward has
 * begun (the loss is recorded), else the one after the last completed
 * output (0 when nothing is on disk).
 */
function firstToCompute(resume: ResumableBuild, n: number, t: number, d: number, layers: number): number {
  if (resume.loss !== undefined) return layers;
  for (let j = layers; j > 0; j--) if (resume.store.open(activationName(j), n, t, d)) return j;
  return 0;
}

/**
 * Runs each incoming block on the running hidden states and emits an
 * {@link ActivationRecord} holding the block's input (the last one also its
 * output). Blocks must arrive in order 0..L-1; their weights are disposed.
 *
 * Each subscription writes to its own store (a resumable build's: its
 * persistent one). On completion the records own it and their taker closes
 * it (`calibrateBackward` does); on error or unsubscription before
 * completion it is closed here.
 */
export function calibrateForward(
  options: CalibrateForwardOptions,
): OperatorFunction<BlockRecord, ActivationRecord> {
  const { calibration } = options;
  const n = calibration.sequences;
  const t = calibration.length;
  if (calibration.ids.length !== n * t) {
    throw new Error(`Calibration ids hold ${calibration.ids.length} tokens, expected ${n} x ${t}`);
  }
  return (source) =>
    defer(() => {
      const { resume } = options;
      const store = resume?.store ?? new ActivationStore();
      const name = (i: number) => (resume ? activationName(i) : undefined);
      let handedOver = false;
      let hidden: StoredActivations | undefined; // [N, T, d]
      let expected = 0;
      let start: number | undefined; // the first block this pass computes
      /** Block `record`'s activation record: its stored input, the last block's output, its linears' outputs. */
      const handOn = (
        record: BlockRecord,
        input: StoredActivations | undefined,
        output: StoredActivations | undefined,
        linearOutputs: Map<string, StoredActivations> | undefined,
      ): ActivationRecord => ({
        model: record.model,
        index: record.index,
        role: record.role,
        calibration,
        store,
        ...(input ? { input } : {}),
        ...(output ? { output } : {}),
        ...(linearOutputs ? { linearOutputs } : {}),
      });
      /** What block `record` stores besides its output: its linears' outputs, when the backward replays them. */
      const linearsOf = (record: BlockRecord): Array<[string, number]> =>
        record.index >= record.model.split.bottom && options.linearOutputs ? linearWidths(record.model, record.weights) : [];
      /** The files block `record` writes in a persistent store: its output's, then its linears'. */
      const namesOf = (record: BlockRecord, linears: Array<[string, number]>): string[] | undefined =>
        resume ? [activationName(record.index + 1), ...linears.map(([linear]) => linearOutputName(record.index, linear))] : undefined;
      /** The record of a block an earlier run did, or what `run` makes of its input `[N, T, d]`. */
      const step = <R>(
        record: BlockRecord,
        run: (input: StoredActivations, chunk: number, linears: Array<[string, number]>) => R,
      ): ActivationRecord | R => {
        const { model, index } = record;
        const { cfg } = model;
        const d = cfg.hidden;
        const chunk = options.chunk ?? defaultChunk(calibration, cfg);
        if (index !== expected) {
          throw new Error(`calibrateForward expects block ${expected} next, got block ${index}`);
        }
        start ??= resume ? firstToCompute(resume, n, t, d, cfg.layers) : 0;
        const recomputed = index >= model.split.bottom;
        const last = index === cfg.layers - 1;
        const linears = linearsOf(record);
        expected++;
        if (index < start) {
          // Done by an earlier run: hand on what is still on disk.
          const input = recomputed ? store.open(activationName(index), n, t, d) : undefined;
          const output = last ? store.open(activationName(cfg.layers), n, t, d) : undefined;
          return handOn(record, input, output, linears.length > 0 ? openLinearOutputs(store, index, linears, n, t) : undefined);
        }
        hidden ??= (start > 0 ? store.open(activationName(start), n, t, d) : undefined) ??
          timeStage(options.events, "forward", () => embedCalibration(store, model, calibration, chunk, name(0)), { block: index }); // [N, T, d]
        return run(hidden, chunk, linears);
      };
      /**
       * The record of block `record.index` once its arrays are stored: its
       * `input` (deleted unless the backward recomputes the block), its
       * `linears`' outputs `[N, T, out]` and, for the last block, its output
       * `[N, T, d]` (`output()`: a pool block's is finished only then).
       */
      const computed = (
        record: BlockRecord,
        input: StoredActivations,
        output: () => StoredActivations,
        outputs: StoredActivations[],
        linears: Array<[string, number]>,
      ): ActivationRecord => {
        const { model, index } = record;
        const recomputed = index >= model.split.bottom;
        const last = index === model.cfg.layers - 1;
        if (!recomputed) input.dispose();
        const linearOutputs = linears.length > 0 ? new Map(linears.map(([linear], k) => [linear, outputs[k]])) : undefined;
        return handOn(record, recomputed ? input : undefined, last ? output() : undefined, linearOutputs);
      };
      const { pool: starting, pace } = options;
      /** Block `record`'s output `[N, T, d]` and its `linears`' `[N, T, out]`, in this thread, stored chunk by chunk. */
      const inThread = (record: BlockRecord, input: StoredActivations, chunk: number, linears: Array<[string, number]>): ActivationRecord => {
        const { arch, cfg } = record.model;
        const names = linears.map(([linear]) => linear);
        const arrays = timeStage(options.events, "forward", () =>
          store.writeEach(n, t, [cfg.hidden, ...linears.map(([, w]) => w)], chunk, (a, b) => {
            const x = chunkTensor(input, a, b); // [n, T, d]
            try {
              return forwardChunk(arch, cfg, record.weights, x, names); // [n, T, d], then [n, T, out] per linear
            } finally {
              x.dispose();
            }
          }, namesOf(record, linears)), { block: record.index });
        const [output, ...outputs] = arrays;
        hidden = output;
        return computed(record, input, () => output, outputs, linears);
      };
      /**
       * The last pool block's output `[N, T, d]` while the slots write it, with
       * each chunk's write by chunk start: the next block's chunk reads its
       * input chunk as soon as that is written, not once the whole block is.
       */
      let writing: { output: ArraysInProgress; written: Map<number, Promise<void>> } | undefined;
      /** When the last pool block's chunks were all written: the next block's forward seconds count from then. */
      let lastDone = 0;
      /**
       * Block `record` on the pool, reading `complete` (`[N, T, d]`) or, once a
       * block before ran on the pool, that block's output as the slots write it:
       * each chunk is posted when its input chunk is written, so the slots run
       * chunks of two blocks side by side instead of idling at each block's
       * end (docs/DISTRIBUTED.md "How a GradOT build uses the cores"). Resolves
       * with the block's record once its chunks are written; its output is
       * finished when the next block's chunks have read it (a persistent
       * store renames the file), the last block's at once.
       */
      const onPool = (
        pool: CalibrationPool,
        record: BlockRecord,
        complete: StoredActivations,
        chunk: number,
        linears: Array<[string, number]>,
      ): Promise<ActivationRecord> => {
        const { index } = record;
        const { cfg } = record.model;
        const input = writing;
        const shared = pool.publish(record.weights);
        disposeWeights(record.weights); // the slots hold it now
        const names = namesOf(record, linears);
        const output = store.beginAt(n, t, [cfg.hidden], names?.slice(0, 1)); // [N, T, d]
        const outputs = store.beginAt(n, t, linears.map(([, w]) => w), names?.slice(1)); // [N, T, out] per linear
        const linearNames = linears.map(([linear]) => linear);
        const posted = performance.now();
        const written = new Map(sequenceChunks(n, chunk).map(([a, b]) => {
          const x = input ? input.output.places(a, b)[0] : complete.place(a, b);
          const targets = [...output.places(a, b), ...outputs.places(a, b)];
          const done = (input?.written.get(a) ?? Promise.resolve()).then(() => pool.forward(shared, x, b - a, t, linearNames, targets));
          done.catch(() => {}); // awaited below, and by the next block's chunk
          return [a, done] as const;
        }));
        writing = { output, written };
        return Promise.all(written.values()).then(() => {
          pool.retire(shared); // every chunk answered
          const now = performance.now();
          options.events?.next({ stage: "forward", block: index, seconds: (now - Math.max(posted, lastDone)) / 1000 });
          lastDone = now;
          const stored = input ? input.output.finish()[0] : complete; // no chunk reads it any more
          return computed(record, stored, () => output.finish()[0], outputs.finish(), linears);
        });
      };
      /**
       * With a pool: each block is started at once (`onPool`) and its record
       * emitted once done, in block order; the pace lets the next block be
       * read while one runs.
       */
      const blocks: OperatorFunction<BlockRecord, ActivationRecord> = starting
        ? (records) =>
          records.pipe(
            concatMap(async (record) => {
              let done: Promise<ActivationRecord>;
              try {
                const begun = step(record, async (input, chunk, linears) => {
                  // A turn of the event loop first, after the embedding and between blocks
                  // read ahead, which come without one: a pool whose workers are up finishes
                  // starting (their "init" replies arrive in it) and the block goes to it.
                  if (!starting.ready) await new Promise((turn) => setImmediate(turn));
                  const pool = starting.ready;
                  return { done: pool ? onPool(pool, record, input, chunk, linears) : Promise.resolve(inThread(record, input, chunk, linears)) };
                });
                done = begun instanceof Promise ? (await begun).done : Promise.resolve(begun);
              } catch (e) {
                pace?.done();
                throw e;
              } finally {
                disposeWeights(record.weights);
              }
              const settled = done.finally(() => pace?.done());
              settled.catch(() => {}); // taken below, unless an earlier block failed
              return { done: settled };
            }),
            concatMap(({ done }) => done),
          )
        : map((record) => {
          try {
            return step(record, (input, chunk, linears) => inThread(record, input, chunk, linears));
          } finally {
            disposeWeights(record.weights);
          }
        });
      return source.pipe(
        blocks,
        tap({ complete: () => (handedOver = true) }),
        finalize(() => {
          if (!handedOver) store.close();
        }),
      );
    });
}
