/**
 * Matrix products for the statistics and scoring code: OpenBLAS `sgemm` and
 * `ssyrk` through the FFI of `lapack_ffi.ts`, with the pure-TS kernels of
 * `gemm_js.ts` when the library is absent (docs/DESIGN.md "Tensors").
 *
 * @module
 */
import { gramTransposedJs, matmulJs } from "./gemm_js.ts";
import { loadLinalgLibrary } from "./lapack_ffi.ts";
import { checkShape, type Matrix } from "./matrix.ts";
import { giveScratch, takeScratch } from "./scratch_arrays.ts";

/**
 * Whether LAPACKE and CBLAS were loaded, i.e. whether `svd`, `eigh`,
 * `matmul` and `gramTransposed` run natively (false: the pure-TS fallback).
 */
export function lapackAvailable(): boolean {
  return loadLinalgLibrary() !== undefined;
}

/**
 * `xᵀx` (cols×cols, exactly symmetric) for an N×cols `x`: the KFAC input
 * factor `A = Σ_t x_t x_tᵀ` of docs/METHOD.md §2 "Hessian by KFAC" when the rows of
 * `x` are the calibration tokens (divide by N for the mean). Uses `ssyrk`,
 * which does half the work of a general product.
 */
export function gramTransposed(x: Matrix): Matrix {
  checkShape(x, "gramTransposed: x");
  const lib = loadLinalgLibrary();
  if (!lib) return gramTransposedJs(x);
  const n = x.cols;
  const out: Matrix = { rows: n, cols: n, data: new Float32Array(n * n) }; // [cols, cols]
  lib.ssyrk(n, x.rows, x.data, n, out.data, n);
  symmetrizeUpper(out);
  return out;
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

/**
 * `c += xᵀx` on the upper triangle of `c` (cols×cols) only, in place: running
 * KFAC sums (docs/METHOD.md §2) accumulate chunk after chunk with no temporary of
 * `c`'s size. The lower triangle is left stale; {@link symmetrizeUpper} it once
 * the sums are complete.
 */
export function gramAccumulateUpper(c: Matrix, x: Matrix): void {
  checkShape(x, "gramAccumulateUpper: x");
  const n = x.cols;
  expectSquare(c, n, "gramAccumulateUpper: c");
  const lib = loadLinalgLibrary();
  if (lib) {
    lib.ssyrk(n, x.rows, x.data, n, c.data, n, 1);
    return;
  }
  const xx = gramTransposedJs(x).data; // [cols, cols]
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) c.data[i * n + j] += xx[i * n + j];
  }
}

/** Side of the tiles {@link symmetrizeUpper} copies in: a tile and its mirror (2 × 16 KiB) stay in L1. */
const SYMMETRIZE_TILE = 64;

/**
 * Divides the upper triangle of square `c` by `divisor` and copies it onto
 * the lower triangle, in place: a running sum turned into a symmetric mean
 * (KFAC's `A`, `G`, docs/METHOD.md §2). The division runs row by row; the copy
 * goes tile by tile ({@link SYMMETRIZE_TILE}), so reading the upper triangle
 * down its columns does not miss the cache on every entry (a 3072² factor's
 * row-by-row copy took 4× as long).
 */
export function symmetrizeUpper(c: Matrix, divisor = 1): void {
  const n = c.cols;
  expectSquare(c, n, "symmetrizeUpper: c");
  const data = c.data;
  if (divisor !== 1) {
    for (let i = 0; i < n; i++) for (let k = i * n + i; k < (i + 1) * n; k++) data[k] /= divisor;
  }
  for (let i0 = 0; i0 < n; i0 += SYMMETRIZE_TILE) {
    const iEnd = Math.min(i0 + SYMMETRIZE_TILE, n);
    for (let j0 = 0; j0 <= i0; j0 += SYMMETRIZE_TILE) {
      for (let i = i0; i < iEnd; i++) {
        const row = i * n;
        const jEnd = Math.min(j0 + SYMMETRIZE_TILE, i); // below the diagonal only
        for (let j = j0; j < jEnd; j++) data[row + j] = data[j * n + i];
      }
    }
  }
}

/**
 * `reduce(op(a) · op(b))`, the product formed in reused memory
 * (src/linalg/scratch_arrays.ts) and given back once `reduce` returns: for
 * products that are only reduced (column norms, dots), never kept, so
 * `reduce` must not keep the matrix it is handed.
 */
export function reducedProduct<T>(a: Matrix, b: Matrix, transA: boolean, transB: boolean, reduce: (product: Matrix) => T): T {
  const rows = transA ? a.cols : a.rows;
  const cols = transB ? b.rows : b.cols;
  const product: Matrix = { rows, cols, data: takeScratch(rows * cols) }; // [rows, cols], every entry written
  try {
    matmulInto(product, a, b, transA, transB);
    return reduce(product);
  } finally {
    giveScratch(product.data);
  }
}

/** `c += op(a) · op(b)` in place (`c` is m×n): a running sum with no temporary. */
export function matmulAccumulate(c: Matrix, a: Matrix, b: Matrix, transA = false, transB = false): void {
  productInto(c, a, b, transA, transB, true);
}

/**
 * `c = op(a) · op(b)` into `c`'s array (m×n; its old values are never read):
 * a product written where its consumer wants it, e.g. a tensor's heap memory.
 */
export function matmulInto(c: Matrix, a: Matrix, b: Matrix, transA = false, transB = false): void {
  productInto(c, a, b, transA, transB, false);
}

/** {@link matmulAccumulate} (`accumulate`) or {@link matmulInto}. */
function productInto(c: Matrix, a: Matrix, b: Matrix, transA: boolean, transB: boolean, accumulate: boolean): void {
  const name = accumulate ? "matmulAccumulate" : "matmulInto";
  checkShape(a, `${name}: a`);
  checkShape(b, `${name}: b`);
  checkShape(c, `${name}: c`);
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const n = transB ? b.rows : b.cols;
  if ((transB ? b.cols : b.rows) !== k || c.rows !== m || c.cols !== n) {
    throw new Error(
      `${name}: c is ${c.rows}×${c.cols} but op(a) op(b) is ${m}×${k} · ${transB ? b.cols : b.rows}×${n}`,
    );
  }
  const lib = loadLinalgLibrary();
  if (lib) {
    lib.sgemm(transA, transB, m, n, k, a.data, a.cols, b.data, b.cols, c.data, n, accumulate ? 1 : 0);
    return;
  }
  const product = matmulJs(a, b, transA, transB).data; // [m, n]
  if (!accumulate) {
    c.data.set(product);
    return;
  }
  for (let i = 0; i < product.length; i++) c.data[i] += product[i];
}

/**
 * `c += (xᵀ x)[0:rows, from:to]` in place (`c` is rows×(to−from); `rows`
 * defaults to all of x's columns): a block of the Gram matrix `xᵀx`, so a
 * factor held as its rows can be reduced block by block without ever forming
 * the whole cols×cols matrix.
 */
export function gramColumnsAccumulate(c: Matrix, x: Matrix, from: number, to: number, rows = x.cols): void {
  checkShape(x, "gramColumnsAccumulate: x");
  const n = x.cols;
  const w = to - from;
  if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && to <= n && w >= 1)) {
    throw new Error(`gramColumnsAccumulate: column range [${from}, ${to}) is not inside [0, ${n})`);
  }
  if (!(Number.isInteger(rows) && rows >= 1 && rows <= n)) {
    throw new Error(`gramColumnsAccumulate: ${rows} rows is not in [1, ${n}]`);
  }
  if (c.rows !== rows || c.cols !== w || c.data.length !== rows * w) {
    throw new Error(`gramColumnsAccumulate: c is ${c.rows}×${c.cols}, expected ${rows}×${w}`);
  }
  const lib = loadLinalgLibrary();
  if (lib) {
    lib.sgemm(true, false, rows, w, x.rows, x.data, n, x.data.subarray(from), n, c.data, w, 1);
    return;
  }
  for (let r = 0; r < x.rows; r++) {
    const row = r * n;
    for (let i = 0; i < rows; i++) {
      const xi = x.data[row + i];
      if (xi === 0) continue;
      for (let j = 0; j < w; j++) c.data[i * w + j] += xi * x.data[row + from + j];
    }
  }
}

function expectSquare(c: Matrix, n: number, what: string): void {
  if (c.rows !== n || c.cols !== n || c.data.length !== n * n) {
    throw new Error(`${what} is ${c.rows}×${c.cols}, expected ${n}×${n}`);
  }
}
