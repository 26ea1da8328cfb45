/**
 * `scoreGcs`: the Gradient-preserving Compression Score of every candidate
 * perturbation of a middle block (docs/METHOD.md §2): per SVD component of each
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
import type { LinearSpec } from "../model/types.ts";
import { addChannelTerms, drdScores, scpConsumerTerms, scpProducerTerms } from "../score/gcs.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import type { DrdScores, ScoredBlockRecord, StatsRecord } from "../records/records.ts";
import { isAttention, MLP_PART, mlpSpecs, readLinear } from "../model/mlp_view.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { peekMatrix } from "../model/weights.ts";

/** The privacy/utility trade-offs λ, set apart for attention and MLP (docs/METHOD.md §2). */
export interface GcsOptions {
  /** λ_attn: weight of the loss-increase term for the attention projections (DRD; docs/METHOD.md §2). */
  lambdaAttn: number;
  /** λ_mlp: weight of the loss-increase term for the MLP channels (SCP). */
  lambdaMlp: number;
  /** Receives the seconds of each block's SVDs and scoring. */
  events?: StageEvents;
  /**
   * The parts to score: attention linears by name and `mlp` for the MLP's
   * channels (default all; a pool scores a block part by part:
   * src/distributed/block_parts.ts). Only their statistics are needed.
   */
  parts?: readonly string[];
}

/**
 * Scores each middle block, MLP first, linear by linear: each linear's KFAC
 * factors are dropped from the record's `stats` as soon as they are scored,
 * and weights are read in place (views of the tensor heap, `peekMatrix`).
 * The MLP's statistics are the block's largest (the width m on a side), so
 * the attention SVDs, which DRD keeps until it compresses, are taken once
 * they are gone: the peak holds all the factors or the attention factors
 * plus the SVDs, never both. A ReLU MLP's first-order terms, producer's
 * and consumer's, both come from the record's channel products
 * (docs/GRADOT.md "SCP's first-order terms").
 */
export function scoreGcs(options: GcsOptions): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  return map((record): ScoredBlockRecord => {
    const { model, index, role, weights, stats, channelProducts } = record;
    const drd = new Map<string, DrdScores>();
    if (role !== "middle") return { model, index, role, weights, drd, compression: {} };
    const specs = model.arch.linears(model.cfg);
    const factorsOf = (spec: LinearSpec): KfacFactors => {
      const factors = stats.get(spec.name);
      if (!factors) throw new Error(`scoreGcs: block ${index} lacks the statistics of "${spec.name}"`);
      return factors;
    };
    const scored = (part: string) => options.parts?.includes(part) ?? true;
    const mlp = mlpSpecs(specs);
    const scp = !scored(MLP_PART) ? undefined : timeStage(options.events, "score", () => {
      const output = factorsOf(mlp.output);
      const total = scpConsumerTerms(readLinear(weights, mlp.output), output, options.lambdaMlp, mlp.output.name, channelProducts);
      stats.delete(mlp.output.name);
      for (const spec of mlp.inputs) {
        const terms = scpProducerTerms(readLinear(weights, spec), factorsOf(spec), options.lambdaMlp, spec.name, channelProducts);
        addChannelTerms(total, terms, spec.name);
        stats.delete(spec.name); // spent: free before the next linear
      }
      return Float32Array.from(total);
    }, { block: index });
    for (const spec of specs.filter((s) => isAttention(s) && scored(s.name))) {
      const factors = factorsOf(spec);
      const w = weights.get(`${spec.name}.weight`);
      if (!w) throw new Error(`scoreGcs: block ${index} lacks the weight of "${spec.name}"`);
      const decomposition = timeStage(options.events, "svd", () => svd(peekMatrix(w)), { block: index }); // Wk [in, out] = U diag(s) Vt
      const scores = timeStage(options.events, "score", () => drdScores(decomposition, factors, options.lambdaAttn), { block: index });
      drd.set(spec.name, { svd: decomposition, scores });
      stats.delete(spec.name); // spent: free before the next SVD
    }
    stats.clear();
    return { model, index, role, weights, drd, scp, compression: {} };
  });
}
