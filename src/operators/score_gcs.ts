/**
 * `scoreGcs`: the Gradient-preserving Compression Score of every candidate
 * perturbation of a middle block (METHOD.md §2): per SVD component of each
 * attention projection (DRD) and per MLP channel (SCP), in closed form from
 * the block's KFAC factors. Adapter blocks pass through unscored.
 *
 * @example
 * ```ts
 * accumulateKfac().pipe(scoreGcs({ lambdaAttn: 1, lambdaMlp: 1 }), compressDrd(), compressScp())
 * ```
 *
 * @module
 */
import { map, type OperatorFunction } from "rxjs";
import { svd } from "../linalg/svd.ts";
import { drdScores, scpScores } from "../score/gcs.ts";
import type { DrdScores, ScoredBlockRecord, StatsRecord } from "../records/records.ts";
import { isAttention, mlpSpecs, mlpStats, readMlp } from "./mlp_view.ts";
import { type StageClock, timeStage } from "./stage_clock.ts";
import { toMatrix } from "./weights.ts";

/** The privacy/utility trade-offs λ, set apart for attention and MLP (METHOD.md §2). */
export interface GcsOptions {
  lambdaAttn: number;
  lambdaMlp: number;
  clock?: StageClock;
}

/**
 * Scores each middle block. Each linear's KFAC factors are dropped from the
 * record's `stats` as soon as they are scored, so the block's peak holds one
 * SVD beside the factors still to score, not beside all of them.
 */
export function scoreGcs(options: GcsOptions): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  return map((record): ScoredBlockRecord => {
    const { model, index, role, weights, stats } = record;
    const drd = new Map<string, DrdScores>();
    if (role !== "middle") return { model, index, role, weights, drd, compression: {} };
    const specs = model.arch.linears(model.cfg);
    for (const spec of specs.filter(isAttention)) {
      const factors = stats.get(spec.name);
      const w = weights.get(`${spec.name}.weight`);
      if (!factors || !w) throw new Error(`scoreGcs: block ${index} lacks the weight or statistics of "${spec.name}"`);
      const decomposition = timeStage(options.clock, "svd", () => svd(toMatrix(w))); // Wk [in, out] = U diag(s) Vt
      const scores = timeStage(options.clock, "score", () => drdScores(decomposition, factors, options.lambdaAttn));
      drd.set(spec.name, { svd: decomposition, scores });
      stats.delete(spec.name); // its factors are spent: free them before the next SVD
    }
    const mlp = mlpSpecs(specs);
    const scp = timeStage(options.clock, "score", () => scpScores(readMlp(weights, mlp), mlpStats(stats, mlp), options.lambdaMlp));
    stats.clear();
    return { model, index, role, weights, drd, scp, compression: {} };
  });
}
