/**
 * Matrix products for the statistics and scoring code: OpenBLAS `sgemm` and
 * `ssyrk` through the FFI of `lapack_ffi.ts`, with the pure-TS kernels of
 * `gemm_js.ts` when the library is absent (DESIGN.md "Tensors").
 *
 * @module
 */
import { gramTransposedJs, matmulJs } from "./gemm_js.ts";
import { loadLinalgLibrary } from "./lapack_ffi.ts";
import { checkShape, type Matrix } from "./matrix.ts";

/**
 * Whether LAPACKE and CBLAS were loaded, i.e. whether `svd`, `eigh`,
 * `matmul` and `gramTransposed` run natively (false: the pure-TS fallback).
 */
export function lapackAvailable(): boolean {
  return loadLinalgLibrary() !== undefined;
}

/**
 * `xᵀx` (cols×cols, exactly symmetric) for an N×cols `x`: the KFAC input
 * factor `A = Σ_t x_t x_tᵀ` of METHOD.md §2 "Hessian by KFAC" when the rows of
 * `x` are the calibration tokens (divide by N for the mean). Uses `ssyrk`,
 * which does half the work of a general product.
 */
export function gramTransposed(x: Matrix): Matrix {
  checkShape(x, "gramTransposed: x");
  const lib = loadLinalgLibrary();
  if (!lib) return gramTransposedJs(x);
  const n = x.cols;
  const out = new Float32Array(n * n); // [cols, cols]
  lib.ssyrk(n, x.rows, x.data, n, out, n);
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) out[i * n + j] = out[j * n + i];
  }
  return { rows: n, cols: n, data: out };
}

/**
 * `op(a) · op(b)`, where `op` transposes its argument when `transA` /
 * `transB` is set (no transposed copy is made on either path).
 */
export function matmul(a: Matrix, b: Matrix, transA = false, transB = false): Matrix {
  checkShape(a, "matmul: a");
  checkShape(b, "matmul: b");
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const kb = transB ? b.cols : b.rows;
  const n = transB ? b.rows : b.cols;
  if (k !== kb) {
    throw new Error(
      `matmul: inner dimensions differ: op(a) is ${m}×${k} and op(b) is ${kb}×${n} ` +
        `(a ${a.rows}×${a.cols}${transA ? " transposed" : ""}, b ${b.rows}×${b.cols}${transB ? " transposed" : ""})`,
    );
  }
  const lib = loadLinalgLibrary();
  if (!lib) return matmulJs(a, b, transA, transB);
  const out = new Float32Array(m * n); // [m, n]
  lib.sgemm(transA, transB, m, n, k, a.data, a.cols, b.data, b.cols, out, n);
  return { rows: m, cols: n, data: out };
}
