/**
 * Pure-TS matrix products, the fallback of `gemm.ts` when CBLAS is absent
 * (docs/DESIGN.md "Tensors"). Products are accumulated in float64 and rounded
 * once to float32; no transposed copy of either operand is made.
 *
 * @module
 */
import type { Matrix } from "./matrix.ts";

/**
 * `op(a) · op(b)` where `op` transposes when the flag is set; shapes must
 * already agree (`gemm.ts` checks them).
 */
export function matmulJs(a: Matrix, b: Matrix, transA: boolean, transB: boolean): Matrix {
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const n = transB ? b.rows : b.cols;
  const ad = a.data;
  const bd = b.data;
  const lda = a.cols;
  const out = new Float32Array(m * n); // [m, n]
  if (!transB) {
    // Row i of the result is Σ_p op(a)[i, p] · b[p, :]: contiguous axpys.
    const acc = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      acc.fill(0);
      for (let p = 0; p < k; p++) {
        const aip = transA ? ad[p * lda + i] : ad[i * lda + p];
        if (aip === 0) continue;
        const row = p * n;
        for (let j = 0; j < n; j++) acc[j] += aip * bd[row + j];
      }
      out.set(acc, i * n);
    }
  } else {
    // Entry (i, j) is op(a)[i, :] · b[j, :]: contiguous dot products.
    const ai = new Float64Array(k);
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) ai[p] = transA ? ad[p * lda + i] : ad[i * lda + p];
      for (let j = 0; j < n; j++) {
        const row = j * k;
        let sum = 0;
        for (let p = 0; p < k; p++) sum += ai[p] * bd[row + p];
        out[i * n + j] = sum;
      }
    }
  }
  return { rows: m, cols: n, data: out };
}

/** `xᵀx` (cols×cols) for an N×cols `x`, one output row at a time (O(cols) extra memory). */
export function gramTransposedJs(x: Matrix): Matrix {
  const { rows, cols, data } = x;
  const out = new Float32Array(cols * cols); // [cols, cols]
  const acc = new Float64Array(cols);
  for (let i = 0; i < cols; i++) {
    acc.fill(0);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      const xi = data[base + i];
      if (xi === 0) continue;
      for (let j = i; j < cols; j++) acc[j] += xi * data[base + j];
    }
    for (let j = i; j < cols; j++) {
      out[i * cols + j] = acc[j];
      out[j * cols + i] = acc[j];
    }
  }
  return { rows: cols, cols, data: out };
}
