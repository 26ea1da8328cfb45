/**
 * Test-only references for the linear-algebra room, independent of the code
 * under test: a seeded generator, matrices with a known spectrum (built from
 * Gram-Schmidt orthogonal factors in float64), a naive float64 triple-loop
 * product, and the error measures the tests bound.
 */
import type { Matrix } from "../../src/linalg/matrix.ts";

/** A seeded standard-normal generator (mulberry32 + Box-Muller). */
export function normalRng(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A rows×cols matrix of standard-normal entries. */
export function randomMatrix(rows: number, cols: number, rng: () => number): Matrix {
  return { rows, cols, data: Float32Array.from({ length: rows * cols }, rng) };
}

/** A random n×k matrix with orthonormal columns (float64, row-major), by modified Gram-Schmidt twice. */
export function randomOrthonormal(n: number, k: number, rng: () => number): Float64Array {
  const q = Float64Array.from({ length: n * k }, rng); // [n, k]
  for (let j = 0; j < k; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += q[i * k + p] * q[i * k + j];
        for (let i = 0; i < n; i++) q[i * k + j] -= dot * q[i * k + p];
      }
    }
    let sq = 0;
    for (let i = 0; i < n; i++) sq += q[i * k + j] ** 2;
    for (let i = 0; i < n; i++) q[i * k + j] /= Math.sqrt(sq);
  }
  return q;
}

/** `U diag(sigma) Vᵀ` for random orthonormal U (rows×k), V (cols×k), k = sigma.length, rounded to float32. */
export function withSingularValues(rows: number, cols: number, sigma: number[], rng: () => number): Matrix {
  const k = sigma.length;
  const u = randomOrthonormal(rows, k, rng);
  const v = randomOrthonormal(cols, k, rng);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let x = 0;
      for (let p = 0; p < k; p++) x += u[i * k + p] * sigma[p] * v[j * k + p];
      data[i * cols + j] = x;
    }
  }
  return { rows, cols, data };
}

/** `Q diag(lambda) Qᵀ` for a random orthogonal Q, symmetrised exactly after rounding to float32. */
export function withEigenvalues(lambda: number[], rng: () => number): Matrix {
  const n = lambda.length;
  const a: Matrix = { rows: n, cols: n, data: new Float32Array(n * n) };
  const q = randomOrthonormal(n, n, rng);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let x = 0;
      for (let p = 0; p < n; p++) x += q[i * n + p] * lambda[p] * q[j * n + p];
      a.data[i * n + j] = x;
      a.data[j * n + i] = x;
    }
  }
  return a;
}

/** `lo · (hi/lo)^(i/(k−1))` for i = k−1 … 0: k values from hi down to lo, evenly spaced in log scale. */
export function logspaceDescending(hi: number, lo: number, k: number): number[] {
  return Array.from({ length: k }, (_, i) => hi * (lo / hi) ** (i / (k - 1)));
}

/** The naive triple-loop `op(a) op(b)` in float64, and `|op(a)| |op(b)|` for rounding-error bounds. */
export function naiveMatmul(
  a: Matrix, b: Matrix, transA: boolean, transB: boolean,
): { product: Float64Array; magnitude: Float64Array; m: number; n: number; k: number } {
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const n = transB ? b.rows : b.cols;
  const at = (i: number, p: number) => (transA ? a.data[p * a.cols + i] : a.data[i * a.cols + p]);
  const bt = (p: number, j: number) => (transB ? b.data[j * b.cols + p] : b.data[p * b.cols + j]);
  const product = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let x = 0;
      let y = 0;
      for (let p = 0; p < k; p++) {
        x += at(i, p) * bt(p, j);
        y += Math.abs(at(i, p) * bt(p, j));
      }
      product[i * n + j] = x;
      magnitude[i * n + j] = y;
    }
  }
  return { product, magnitude, m, n, k };
}

/** ‖A − U diag(s) Vᵀ‖_F / ‖A‖_F in float64 (over the first s.length columns of u and rows of vt). */
export function reconstructionError(a: Matrix, u: Matrix, s: Float32Array, vt: Matrix): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < a.cols; j++) {
      let x = 0;
      for (let p = 0; p < s.length; p++) x += u.data[i * u.cols + p] * s[p] * vt.data[p * vt.cols + j];
      const aij = a.data[i * a.cols + j];
      num += (aij - x) ** 2;
      den += aij * aij;
    }
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** max |QᵀQ − I| over the columns of `q` (pass `rows: true` to test its rows instead). */
export function orthogonalityError(q: Matrix, rows = false): number {
  const count = rows ? q.rows : q.cols;
  const len = rows ? q.cols : q.rows;
  const at = (vec: number, i: number) => (rows ? q.data[vec * q.cols + i] : q.data[i * q.cols + vec]);
  let worst = 0;
  for (let x = 0; x < count; x++) {
    for (let y = x; y < count; y++) {
      let dot = 0;
      for (let i = 0; i < len; i++) dot += at(x, i) * at(y, i);
      worst = Math.max(worst, Math.abs(dot - (x === y ? 1 : 0)));
    }
  }
  return worst;
}
