/**
 * ScaleOT's Selective Rank Compression (docs/METHOD.md §3 "ScaleOT"): each
 * attention projection of a kept middle block is truncated to its `r`
 * largest SVD components, `r = max(1, round((1 − β) k))` for rank reduction
 * β and full rank `k = min(in, out)`, and stored as DRD stores its factors
 * (`src/compress/drd.ts`: `weight_u = U_r diag(s_r)`, `weight_v = Vt_r`, or
 * dense when the factors are not smaller), so the emulator loader runs it
 * as it runs a GradOT block. By Eckart–Young the truncation error is
 * `‖W − W_r‖_F² = Σ_{i ≥ r} s_i²`, the discarded singular values' energy.
 *
 * @module
 */
import { compressDrd, type DrdResult } from "./drd.ts";
import { svd } from "../linalg/svd.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { LinearSpec, WeightMap } from "../model/types.ts";
import { fromMatrix, peekMatrix, replaceWeight } from "../model/weights.ts";

/**
 * The kept rank of a projection of full rank `k` at rank reduction `beta`:
 * `max(1, round((1 − β) k))`.
 *
 * @throws RangeError when `beta` is not in [0, 1) or `k` is not a positive integer
 */
export function reducedRank(k: number, beta: number): number {
  if (!(Number.isFinite(beta) && beta >= 0 && beta < 1)) {
    throw new RangeError(`ScaleOT rank reduction must be in [0, 1) (the fraction of each attention projection's rank removed), got ${beta}`);
  }
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`A projection's rank must be a positive integer, got ${k}`);
  return Math.max(1, Math.round((1 - beta) * k));
}

/** Stored parameters of an `[in, out]` projection truncated to rank `r`: the factors, or the dense matrix when they are not smaller (as `compressDrd`). */
export function truncatedParams(inF: number, out: number, r: number): number {
  return Math.min(r * (inF + out), inF * out);
}

/** One projection truncated to rank `rank`: DRD's storage plus the truncation error. */
export interface TruncatedProjection {
  /** The stored factors or dense product (`compressDrd`'s result). */
  result: DrdResult;
  /** `Σ_{i ≥ rank} s_i²`: the squared Frobenius norm of what was cut (Eckart–Young). */
  discardedEnergy: number;
}

/** The best rank-`rank` approximation of the kernel-layout `w` `[in, out]` (module doc). */
export function truncateRank(w: Matrix, rank: number): TruncatedProjection {
  const factors = svd(w);
  const { s } = factors;
  // keepTopFraction 1: every kept component is chosen by singular value, so the scores do not matter
  const result = compressDrd(factors, s, rank, { keepTopFraction: 1 });
  let discardedEnergy = 0;
  for (let i = rank; i < s.length; i++) discardedEnergy += s[i] * s[i];
  return { result, discardedEnergy };
}

/**
 * Truncates every attention projection of `linears` in `weights` (a kept
 * middle block's, modified in place) to {@link reducedRank} at `beta`.
 * Returns the kept rank per projection name (the block's `CompressionNote`).
 */
export function compressAttentionRanks(weights: WeightMap, linears: readonly LinearSpec[], beta: number): Record<string, number> {
  const ranks: Record<string, number> = {};
  for (const spec of linears) {
    if (!spec.role.startsWith("attn.")) continue;
    const rank = reducedRank(Math.min(spec.inFeatures, spec.outFeatures), beta);
    const weightName = `${spec.name}.weight`;
    const w = weights.get(weightName);
    if (!w) throw new Error(`Selective Rank Compression: block weights lack "${weightName}"`);
    const { result } = truncateRank(peekMatrix(w), rank); // [in, out]
    if (result.kind === "lowRank") {
      w.dispose();
      weights.delete(weightName);
      replaceWeight(weights, `${spec.name}.weight_u`, fromMatrix(result.weightU)); // [in, r]
      replaceWeight(weights, `${spec.name}.weight_v`, fromMatrix(result.weightV)); // [r, out]
    } else {
      replaceWeight(weights, weightName, fromMatrix(result.weight)); // [in, out]
    }
    ranks[spec.name] = rank;
  }
  return ranks;
}
