/**
 * Dynamic Rank Decomposition of an attention projection (docs/METHOD.md §2 DRD):
 * keep the top 5% of SVD components by singular value, fill the rank budget
 * with the components of largest GCS (`src/score/gcs.ts` `drdScores`; ties
 * by singular value), and store the kept factors.
 *
 * Layout: everything is kernel layout (`src/model/types.ts`). `svd` is the
 * thin SVD of `Wk` `[in, out]`; the result is `weight_u = U_r diag(s_r)`
 * `[in, r]` and `weight_v = Vt_r` `[r, out]`, so `Wk ≈ weight_u · weight_v`
 * and a block computes `y = (x · weight_u) · weight_v + b`.
 *
 * @module
 */
import { matmul } from "../linalg/gemm.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { SvdResult } from "../linalg/svd.ts";
import { type Selection, type SelectionKind, selectTop, type TieNote } from "./select.ts";

/** Options of {@link selectDrdComponents} and {@link compressDrd}. */
export interface DrdOptions {
  /**
   * Fraction of the components (ceil) always kept by singular value,
   * whatever their score (default 0.05, the GradOT text's "top 5%").
   */
  keepTopFraction?: number;
  /** What ranks the components (default `gcs`; `magnitude`: the top singular values, a plain truncated SVD). */
  selection?: SelectionKind;
}

/** The compressed projection: factors when they are smaller, else dense. */
export type DrdResult =
  & {
    /** Kept component indices, ascending (descending singular value). */
    kept: Int32Array;
    /** Whether the cut among the scored components fell in a GCS tie (`src/compress/select.ts`). */
    tie: TieNote;
  }
  & (
    | {
      kind: "lowRank";
      /** `U_r diag(s_r)`, `[in, r]` (block weight `name.weight_u`). */
      weightU: Matrix;
      /** `Vt_r`, `[r, out]` (block weight `name.weight_v`). */
      weightV: Matrix;
    }
    | {
      /** `r (in + out) >= in · out`: the factors would not save anything. */
      kind: "dense";
      /** `U_r diag(s_r) Vt_r`, `[in, out]` (block weight `name.weight`). */
      weight: Matrix;
    }
  );

/**
 * Which components of a rank-`k` SVD to keep at rank budget `rank` (docs/METHOD.md
 * §2 DRD): the `min(rank, ceil(keepTopFraction · k))` components of largest
 * singular value, then the largest `scores` among the rest, equal scores
 * decided by the larger singular value, then the lower index
 * (`selectTop`, docs/METHOD.md §2 "Ties at the cut"). With `selection:
 * "magnitude"` the `rank` largest singular values, scores unused. Returns
 * `[rank]` ascending component indices and the cut's tie note.
 */
export function selectDrdComponents(
  s: Float32Array,
  scores: Float32Array,
  rank: number,
  options: DrdOptions = {},
): Selection {
  const k = s.length;
  if (scores.length !== k) {
    throw new Error(`DRD has ${k} singular values but ${scores.length} scores`);
  }
  if (!Number.isInteger(rank) || rank < 1 || rank > k) {
    throw new Error(`DRD rank must be an integer in [1, ${k}], got ${rank}`);
  }
  const fraction = options.keepTopFraction ?? 0.05;
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new Error(`DRD keepTopFraction must be in [0, 1], got ${fraction}`);
  }
  if ((options.selection ?? "gcs") === "magnitude") return selectTop(s, s, rank, "DRD component");
  const bad = scores.findIndex((v) => Number.isNaN(v));
  if (bad >= 0) throw new Error(`DRD component ${bad} has a NaN score`);
  const protectedSet = selectTop(s, s, Math.min(rank, Math.ceil(fraction * k)), "DRD component").kept;
  const isProtected = new Set(protectedSet);
  const rest = Array.from({ length: k }, (_, i) => i).filter((i) => !isProtected.has(i));
  const scored = selectTop(scores, s, rank - protectedSet.length, "DRD component", rest);
  return { kept: Int32Array.from([...protectedSet, ...scored.kept]).sort(), tie: scored.tie };
}

/**
 * Compresses one projection to rank `rank` (docs/METHOD.md §2 DRD): selects the
 * components with {@link selectDrdComponents} and returns `weight_u` /
 * `weight_v` (module doc), or the dense rank-`rank` reconstruction when the
 * factors hold at least as many numbers as the matrix (`kind: "dense"`).
 */
export function compressDrd(
  svd: SvdResult,
  scores: Float32Array,
  rank: number,
  options: DrdOptions = {},
): DrdResult {
  const inF = svd.u.rows;
  const out = svd.vt.cols;
  const k = svd.s.length;
  if (svd.u.cols !== k || svd.vt.rows !== k) {
    throw new Error(
      `DRD SVD factors are U [${svd.u.rows}, ${svd.u.cols}], s [${k}], Vt [${svd.vt.rows}, ${svd.vt.cols}]: expected U [in, ${k}] and Vt [${k}, out]`,
    );
  }
  const { kept, tie } = selectDrdComponents(svd.s, scores, rank, options);
  const u = new Float32Array(inF * rank); // [in, r]
  for (let r = 0; r < inF; r++) {
    for (let c = 0; c < rank; c++) {
      const i = kept[c];
      u[r * rank + c] = svd.u.data[r * k + i] * svd.s[i];
    }
  }
  const v = new Float32Array(rank * out); // [r, out]
  kept.forEach((i, c) => v.set(svd.vt.data.subarray(i * out, (i + 1) * out), c * out));
  const weightU = { rows: inF, cols: rank, data: u };
  const weightV = { rows: rank, cols: out, data: v };
  if (rank * (inF + out) < inF * out) return { kind: "lowRank", weightU, weightV, kept, tie };
  return { kind: "dense", weight: matmul(weightU, weightV), kept, tie };
}
