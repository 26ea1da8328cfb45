/**
 * Linear CKA (centred kernel alignment) between the representations blocks
 * compute on the same calibration tokens: the similarity CRaSh clusters
 * middle blocks by (docs/METHOD.md §3 "CRaSh").
 *
 * For representations `X` `[n, p]` and `Y` `[n, q]` of the same `n` tokens
 * (one row per token), centred by column (`Xᶜ = X − 1 μ_Xᵀ`, `μ_X` the
 * column means):
 *
 *     CKA(X, Y) = ‖Xᶜᵀ Yᶜ‖_F² / (‖Xᶜᵀ Xᶜ‖_F · ‖Yᶜᵀ Yᶜ‖_F)
 *
 * It lies in [0, 1], is 1 for identical representations, and is unchanged
 * by an isotropic scaling or an orthogonal rotation of either side (but not
 * by an arbitrary invertible map). The products are `p×q` (feature side),
 * never `n×n`, so the cost grows with the calibration tokens only linearly;
 * {@link ckaMatrix} streams the rows in chunks, so a representation need not
 * be resident whole (the calibration pass keeps them on disk). Centring uses
 * the exact column means of a first pass, not `XᵀY − n μ_X μ_Yᵀ`, whose
 * cancellation loses float32 precision when the means are large (as in
 * transformer hidden states).
 *
 * @module
 */
import { matmulAccumulate } from "../linalg/gemm.ts";
import { checkShape, type Matrix } from "../linalg/matrix.ts";

/** A representation `[n, width]` read as consecutive row chunks (e.g. from an activation store). */
export interface ChunkedRows {
  /** Columns (features) of every chunk. */
  width: number;
  /** Number of chunks; together they hold the `n` rows, in the same order for every representation. */
  chunks: number;
  /** Chunk `k` as a `[rows_k, width]` matrix (a fresh copy the caller may modify). */
  read(k: number): Matrix;
}

/** Column means of the rows of `x` (`[width]`, float64), over all its chunks. */
export function columnMeans(x: ChunkedRows): Float64Array {
  const sums = new Float64Array(x.width); // [width]
  let rows = 0;
  for (let k = 0; k < x.chunks; k++) {
    const m = x.read(k); // [rows_k, width]
    checkShape(m, `columnMeans: chunk ${k}`);
    for (let r = 0; r < m.rows; r++) {
      const row = r * m.cols;
      for (let c = 0; c < m.cols; c++) sums[c] += m.data[row + c];
    }
    rows += m.rows;
  }
  return sums.map((s) => s / rows);
}

/** Subtracts `means` (`[cols]`) from every row of `m`, in place; returns `m`. */
function centre(m: Matrix, means: Float64Array): Matrix {
  for (let r = 0; r < m.rows; r++) {
    const row = r * m.cols;
    for (let c = 0; c < m.cols; c++) m.data[row + c] -= means[c];
  }
  return m;
}

/** `‖m‖_F²`, summed in float64. */
function frobeniusSquared(m: Matrix): number {
  let s = 0;
  for (let i = 0; i < m.data.length; i++) s += m.data[i] * m.data[i];
  return s;
}

/** `‖Xᶜᵀ Yᶜ‖_F²` of two chunked representations with the given column means. */
function centredCrossNorm(x: ChunkedRows, y: ChunkedRows, mx: Float64Array, my: Float64Array): number {
  if (x.chunks !== y.chunks) throw new Error(`CKA: representations of ${x.chunks} and ${y.chunks} chunks cannot be paired`);
  const c: Matrix = { rows: x.width, cols: y.width, data: new Float32Array(x.width * y.width) }; // [p, q]
  for (let k = 0; k < x.chunks; k++) {
    const a = x.read(k); // [rows_k, p]
    const b = y.read(k); // [rows_k, q]
    if (a.rows !== b.rows) throw new Error(`CKA: chunk ${k} has ${a.rows} rows on one side and ${b.rows} on the other`);
    matmulAccumulate(c, centre(a, mx), centre(b, my), true); // += Xᶜ_kᵀ Yᶜ_k
  }
  return frobeniusSquared(c);
}

/**
 * CKA from the three centred cross-product norms `‖Xᶜᵀ Yᶜ‖_F²`,
 * `‖Xᶜᵀ Xᶜ‖_F²` and `‖Yᶜᵀ Yᶜ‖_F²`. A representation that is constant over
 * the tokens carries no information to align: its CKA with anything is 0.
 */
function ckaOf(xy: number, xx: number, yy: number): number {
  return xx > 0 && yy > 0 ? xy / Math.sqrt(xx * yy) : 0;
}

/**
 * The symmetric matrix of linear CKA between every pair of `reps`
 * (`[M, M]` row-major, float64; diagonal 1 unless a representation is
 * constant). All representations must cover the same tokens in the same
 * chunks. Costs one pass per representation for its means and one per
 * pair `i ≤ j` for the `p×q` cross-product.
 *
 * @param onRow called after row `i` is complete (for progress)
 * @throws Error when two representations' chunks disagree in count or rows
 */
export function ckaMatrix(reps: readonly ChunkedRows[], onRow?: (i: number) => void): Float64Array {
  const m = reps.length;
  const means = reps.map(columnMeans);
  const norms = new Float64Array(m * m); // ‖Xᵢᶜᵀ Xⱼᶜ‖_F², i ≤ j
  for (let i = 0; i < m; i++) {
    for (let j = i; j < m; j++) norms[i * m + j] = centredCrossNorm(reps[i], reps[j], means[i], means[j]);
  }
  const out = new Float64Array(m * m); // [M, M]
  for (let i = 0; i < m; i++) {
    for (let j = i; j < m; j++) {
      out[i * m + j] = out[j * m + i] = ckaOf(norms[i * m + j], norms[i * m + i], norms[j * m + j]);
    }
    onRow?.(i);
  }
  return out;
}

/** Linear CKA of two resident representations `x` `[n, p]` and `y` `[n, q]` (module formula). */
export function linearCka(x: Matrix, y: Matrix): number {
  checkShape(x, "linearCka: x");
  checkShape(y, "linearCka: y");
  if (x.rows !== y.rows) throw new Error(`linearCka: x has ${x.rows} rows (tokens) but y has ${y.rows}`);
  const whole = (m: Matrix): ChunkedRows => ({ width: m.cols, chunks: 1, read: () => ({ ...m, data: m.data.slice() }) });
  return ckaMatrix([whole(x), whole(y)])[1];
}
