/**
 * `calibrateForward`: the calibration forward pass over the original model
 * (METHOD.md §2: `g` and the curvature come from one calibration forward +
 * backward). Each block's input activations are kept (outside the tensor
 * heap); its weights are released as soon as its output is computed, so one
 * block is resident at a time (DESIGN.md "The shape").
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
import { map, type OperatorFunction } from "rxjs";
import { tf } from "../tensor/backend.ts";
import type { ActivationRecord, BlockRecord, CalibrationSet } from "../records/records.ts";
import { chunkIds, chunkTensor, defaultChunk, mapChunks } from "./activations.ts";
import { type StageClock, timeStage } from "./stage_clock.ts";
import { disposeWeights } from "./weights.ts";

/** Options of {@link calibrateForward}. */
export interface CalibrateForwardOptions {
  /** The calibration token ids (N sequences of T tokens). */
  calibration: CalibrationSet;
  /** Sequences per chunk (default: about 512 tokens). */
  chunk?: number;
  clock?: StageClock;
}

/**
 * Runs each incoming block on the running hidden states and emits an
 * {@link ActivationRecord} holding the block's input (the last one also its
 * output). Blocks must arrive in order 0..L-1; their weights are disposed.
 */
export function calibrateForward(
  options: CalibrateForwardOptions,
): OperatorFunction<BlockRecord, ActivationRecord> {
  const { calibration } = options;
  const chunk = options.chunk ?? defaultChunk(calibration);
  const n = calibration.sequences;
  const t = calibration.length;
  if (calibration.ids.length !== n * t) {
    throw new Error(`Calibration ids hold ${calibration.ids.length} tokens, expected ${n} x ${t}`);
  }
  return (source) => {
    let hidden: Float32Array | undefined; // [N, T, d]
    let expected = 0;
    return source.pipe(
      map((record): ActivationRecord => {
        const { model, index } = record;
        const { arch, cfg } = model;
        const d = cfg.hidden;
        try {
          if (index !== expected) {
            throw new Error(`calibrateForward expects block ${expected} next, got block ${index}`);
          }
          hidden ??= timeStage(options.clock, "forward", () => mapChunks(n, t, d, chunk, (a, b) =>
            tf.tidy(() => arch.embed(model.outer, chunkIds(calibration, a, b), cfg)))); // [n, T, d]
          const input = hidden;
          hidden = timeStage(options.clock, "forward", () =>
            mapChunks(n, t, d, chunk, (a, b) =>
              tf.tidy(() => arch.block(record.weights, chunkTensor(input, a, b, t, d), cfg)))); // [n, T, d]
          expected++;
          const last = index === cfg.layers - 1;
          return { model, index, role: record.role, calibration, input, ...(last ? { output: hidden } : {}) };
        } finally {
          disposeWeights(record.weights);
        }
      }),
    );
  };
}
