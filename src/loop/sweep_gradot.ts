/**
 * GradOT's λ sweep as a library call (`offtune sweep-gradot`): chooses
 * λ_attn, λ_mlp (and the attention share of the budget) on a model by the
 * two things an emulator must do (docs/METHOD.md §2): keep the adapter's
 * gradients (utility) and be a poor model on its own (privacy). For each
 * setting it measures
 * - `cos`: cosine between the adapter blocks' loss gradient through the
 *   emulator and through the original model, on held-out windows;
 * - `Δnll`: emulator NLL − original NLL on held-out text (nats/token);
 * and ranks settings by `cos · Δnll` (both wanted large). The calibration
 * pass (forward, backward, KFAC) runs once; only scoring and compression are
 * repeated per setting.
 *
 * @module
 */
import { from, lastValueFrom, toArray } from "rxjs";
import type { Tensor } from "@tensorflow/tfjs";
import { calibrationFromTokens } from "../data/calibration.ts";
import { modelPerplexity, type Perplexity } from "../eval/perplexity.ts";
import { cloneWeights, memoryModel } from "../model/memory_model.ts";
import { forwardLogits, lmLoss } from "../model/forward.ts";
import type { WeightMap } from "../model/types.ts";
import { disposeWeights } from "../model/weights.ts";
import { accumulateKfac } from "../operators/accumulate_kfac.ts";
import { calibrateBackward } from "../operators/calibrate_backward.ts";
import { calibrateForward } from "../operators/calibrate_forward.ts";
import { compressDrd } from "../operators/compress_drd.ts";
import { compressScp } from "../operators/compress_scp.ts";
import { readCheckpoint } from "../operators/read_checkpoint.ts";
import { scoreGcs } from "../operators/score_gcs.ts";
import type { ModelHandle, StatsRecord } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";

/** One row of the sweep. */
export interface SweepRow {
  /** GCS λ of the attention projections. */
  lambdaAttn: number;
  /** GCS λ of the MLP channels. */
  lambdaMlp: number;
  /** Attention share of the removed parameters (null: the budget's neutral split). */
  attnShare: number | null;
  /** Cosine of the adapter gradients, emulator vs original. */
  cos: number;
  /** Emulator NLL − original NLL on the held-out text (nats/token). */
  deltaNll: number;
  /** `cos · deltaNll`: the ranking. */
  score: number;
}

/** What {@link sweepGradot} sweeps, and on what. */
export interface SweepOptions {
  /** Calibration token ids (the GradOT build's; `readTokenStream`). */
  calibration: Uint16Array;
  /** Held-out token ids (gradient windows and the NLL). */
  valid: Uint16Array;
  /** Emulator ratio. */
  ratio: number;
  /** λ values, each tried for both λ_attn and λ_mlp. */
  lambdas: readonly number[];
  /** Attention shares to try (default: the neutral split only). */
  shares?: readonly number[];
  /** Calibration sequences. */
  sequences: number;
  /** Held-out windows of min(128, positions) tokens. */
  validWindows: number;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: SweepRow) => void;
}

/** The sweep's result: the original model's held-out perplexity, every row, the best. */
export interface SweepResult {
  /** The original model's NLL and perplexity on the held-out text. */
  original: Perplexity;
  /** The settings tried, in order. */
  rows: SweepRow[];
  /** The row of largest `score`. */
  best: SweepRow;
}

/** The flat gradient of the mean LM loss w.r.t. the adapter blocks' weights. */
function adapterGradient(model: ModelHandle, blocks: WeightMap[], ids: Tensor): Float32Array {
  const adapter = blocks.flatMap((b, i) =>
    i < model.split.bottom || i >= model.cfg.layers - model.split.top ? [...b.keys()].map((k) => ({ i, k })) : []
  );
  const grads = tf.grads((...ws: Tensor[]) => {
    const replaced = blocks.map((b) => new Map(b));
    adapter.forEach(({ i, k }, j) => replaced[i].set(k, ws[j]));
    return lmLoss(forwardLogits(model.arch, model.cfg, model.outer, replaced, ids), ids);
  })(adapter.map(({ i, k }) => blocks[i].get(k)!));
  const flat = new Float32Array(grads.reduce((n, g) => n + g.size, 0));
  let at = 0;
  for (const g of grads) {
    flat.set(g.dataSync() as Float32Array, at);
    at += g.size;
  }
  tf.dispose(grads);
  return flat;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** Sweeps GradOT's settings on `model` (module notes). */
export async function sweepGradot(model: ModelHandle, options: SweepOptions): Promise<SweepResult> {
  const length = Math.min(128, model.cfg.maxPositions);
  const calibration = calibrationFromTokens(options.calibration, options.sequences, length, "the calibration stream");
  const windows = options.validWindows;
  const heldOut = options.valid.subarray(0, windows * length + 1);
  const gradWindows = Math.min(windows, 16);
  const gradIds = tf.tensor2d(calibrationFromTokens(options.valid, gradWindows, length, "the held-out stream").ids, [gradWindows, length], "int32");
  const stats: StatsRecord[] = await lastValueFrom(
    readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward(), accumulateKfac(), toArray()),
  );
  stats.sort((a, b) => a.index - b.index);
  const original = stats.map((s) => s.weights);
  try {
    const reference = adapterGradient(model, original, gradIds);
    const originalModel = memoryModel(model, original.map(cloneWeights));
    const base = await modelPerplexity(originalModel, heldOut, { ctx: length });
    await originalModel.close();
    const rows: SweepRow[] = [];
    for (const attnShare of options.shares ?? [undefined]) {
      for (const lambdaAttn of options.lambdas) {
        for (const lambdaMlp of options.lambdas) {
          // scoreGcs consumes the weights and empties `stats`: each setting scores copies.
          const records = stats.map((s) => ({ ...s, weights: cloneWeights(s.weights), stats: new Map(s.stats) }));
          const compressed = await lastValueFrom(
            from(records).pipe(
              scoreGcs({ lambdaAttn, lambdaMlp }),
              compressDrd({ ratio: options.ratio, attnShare }),
              compressScp({ ratio: options.ratio, attnShare }),
              toArray(),
            ),
          );
          const blocks = compressed.sort((a, b) => a.index - b.index).map((r) => r.weights);
          const emulator = memoryModel(model, blocks);
          const cos = cosine(adapterGradient(model, blocks, gradIds), reference);
          const { nll } = await modelPerplexity(emulator, heldOut, { ctx: length });
          await emulator.close();
          const row = { lambdaAttn, lambdaMlp, attnShare: attnShare ?? null, cos, deltaNll: nll - base.nll, score: cos * (nll - base.nll) };
          rows.push(row);
          options.onRow?.(row);
        }
      }
    }
    const best = rows.reduce((a, b) => (b.score > a.score ? b : a));
    return { original: base, rows, best };
  } finally {
    original.forEach(disposeWeights);
    gradIds.dispose();
  }
}
