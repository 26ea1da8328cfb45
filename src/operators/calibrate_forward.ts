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
import { defer, finalize, map, type OperatorFunction, tap } from "rxjs";
import { tf } from "../tensor/backend.ts";
import { gatherRows } from "../model/vocabulary.ts";
import type { ActivationRecord, BlockRecord, CalibrationSet, ModelHandle } from "../records/records.ts";
import {
  ActivationStore,
  chunkIds,
  chunkTensor,
  defaultChunk,
  type StoredActivations,
} from "../io/activation_store.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";
import { outputWidth } from "../model/shapes.ts";
import type { WeightMap } from "../model/types.ts";
import type { Tensor } from "@tensorflow/tfjs";

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
   * Also store the outputs of every linear of the blocks the backward
   * recomputes (`lin-<i>-<linear>` in a persistent store), so its VJP replays
   * them instead of multiplying again (`BlockOptions.replay`; docs/GRADOT.md
   * "Where the time goes"). Disk, not memory: Σ out floats per token and
   * block, each block's deleted once its backward is done. Default false.
   */
  linearOutputs?: boolean;
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

/**
 * Block `index` on its stored input, chunk by chunk: writes its output and,
 * with `linears`, each linear's output `[N, T, out]` in the same pass.
 */
function blockForward(
  store: ActivationStore,
  model: ModelHandle,
  weights: WeightMap,
  input: StoredActivations,
  chunk: number,
  linears: Array<[string, number]>,
  names?: string[],
): { output: StoredActivations; linearOutputs?: Map<string, StoredActivations> } {
  const { arch, cfg } = model;
  const { sequences: n, length: t, width: d } = input;
  const arrays = store.writeEach(n, t, [d, ...linears.map(([, w]) => w)], chunk, (a, b) => {
    const outputs = new Map<string, Tensor>(); // [n, T, out] per linear
    const options = linears.length > 0 ? { onLinearOutput: (name: string, y: Tensor) => outputs.set(name, tf.keep(y)) } : undefined;
    const y = tf.tidy(() => arch.block(weights, chunkTensor(input, a, b), cfg, options)); // [n, T, d]
    const missing = linears.find(([name]) => !outputs.has(name));
    if (missing) {
      tf.dispose([y, ...outputs.values()]);
      throw new Error(`calibrateForward: block did not run linear "${missing[0]}"`);
    }
    return [y, ...linears.map(([name]) => outputs.get(name)!)];
  }, names);
  if (linears.length === 0) return { output: arrays[0] };
  return { output: arrays[0], linearOutputs: new Map(linears.map(([name], k) => [name, arrays[1 + k]])) };
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
      return source.pipe(
        map((record): ActivationRecord => {
          const { model, index } = record;
          const { arch, cfg } = model;
          const d = cfg.hidden;
          const chunk = options.chunk ?? defaultChunk(calibration, cfg);
          try {
            if (index !== expected) {
              throw new Error(`calibrateForward expects block ${expected} next, got block ${index}`);
            }
            start ??= resume ? firstToCompute(resume, n, t, d, cfg.layers) : 0;
            const recomputed = index >= model.split.bottom;
            const last = index === cfg.layers - 1;
            expected++;
            const linears = recomputed && options.linearOutputs ? linearWidths(model, record.weights) : [];
            const handOn = (
              input: StoredActivations | undefined,
              output: StoredActivations | undefined,
              linearOutputs: Map<string, StoredActivations> | undefined,
            ): ActivationRecord => ({
              model,
              index,
              role: record.role,
              calibration,
              store,
              ...(input ? { input } : {}),
              ...(output ? { output } : {}),
              ...(linearOutputs ? { linearOutputs } : {}),
            });
            if (index < start) {
              // Done by an earlier run: hand on what is still on disk.
              return handOn(
                recomputed ? store.open(activationName(index), n, t, d) : undefined,
                last ? store.open(activationName(cfg.layers), n, t, d) : undefined,
                linears.length > 0 ? openLinearOutputs(store, index, linears, n, t) : undefined,
              );
            }
            hidden ??= (start > 0 ? store.open(activationName(start), n, t, d) : undefined) ??
              timeStage(options.events, "forward", () => embedCalibration(store, model, calibration, chunk, name(0)), { block: index }); // [N, T, d]
            const input = hidden;
            const names = resume ? [activationName(index + 1), ...linears.map(([linear]) => linearOutputName(index, linear))] : undefined;
            const { output, linearOutputs } = timeStage(options.events, "forward", () =>
              blockForward(store, model, record.weights, input, chunk, linears, names), { block: index });
            hidden = output; // [N, T, d]
            if (!recomputed) input.dispose();
            return handOn(recomputed ? input : undefined, last ? hidden : undefined, linearOutputs);
          } finally {
            disposeWeights(record.weights);
          }
        }),
        tap({ complete: () => (handedOver = true) }),
        finalize(() => {
          if (!handedOver) store.close();
        }),
      );
    });
}
