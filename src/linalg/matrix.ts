/**
 * The dense matrix the linear-algebra room works on (docs/DESIGN.md "Tensors":
 * linear algebra tfjs lacks). Plain data, so it crosses worker boundaries and
 * the FFI without conversion: `tensor.dataSync()` of a `[rows, cols]` tensor
 * is already a valid `data`.
 *
 * @module
 */

/** A dense float32 matrix in row-major order: entry (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  /** Number of rows. */
  rows: number;
  /** Number of columns. */
  cols: number;
  /** Row-major values `[rows, cols]`. */
  data: Float32Array;
}

/**
 * Throws a clear error unless `m` is a well-formed non-empty matrix; `what`
 * names the caller and argument in the message (e.g. `matmul: b`).
 */
export function checkShape(m: Matrix, what: string): void {
  const { rows, cols, data } = m;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new Error(`${what} has shape ${rows}×${cols}: expected positive integer dimensions`);
  }
  if (!(data instanceof Float32Array)) {
    throw new Error(`${what} data is not a Float32Array`);
  }
  if (data.length !== rows * cols) {
    throw new Error(
      `${what} has shape ${rows}×${cols} but ${data.length} entries: expected ${rows * cols}`,
    );
  }
}

/**
 * {@link checkShape}, then throws unless every entry is finite. The
 * decompositions call it first, so LAPACK never sees a NaN and the Jacobi
 * loops always terminate. With `upper`, `m` is square and symmetric and only
 * its upper triangle (diagonal included) is read: it holds every value, and
 * its first non-finite entry in row order is the whole matrix's, so the error
 * is the same at half the reads (KFAC's factors, `src/stats/kfac.ts`).
 */
export function checkFinite(m: Matrix, what: string, upper = false): void {
  checkShape(m, what);
  const { rows, cols, data } = m;
  if (upper && rows !== cols) throw new Error(`${what} is ${rows}×${cols}: only a square matrix has an upper triangle`);
  for (let r = 0; r < rows; r++) {
    for (let i = r * cols + (upper ? r : 0); i < (r + 1) * cols; i++) {
      if (!Number.isFinite(data[i])) throw new Error(`${what} has a non-finite entry ${data[i]} at (${r}, ${i - r * cols})`);
    }
  }
}

/**
 * `‖M[i, :]‖₁` for every row i, `[rows]`, summed in float64 left to right.
 * For a symmetric matrix these are its column sums ({@link columnAbsSums}),
 * the same values added in the same order, at a scalar accumulator per row
 * instead of a load and store per entry (SCP's `‖G₁[:,j]‖₁`, `‖A₂[:,j]‖₁`,
 * docs/METHOD.md §2, `src/stats/symmetric_factor.ts`).
 */
export function rowAbsSums(m: Matrix): Float64Array {
  const out = new Float64Array(m.rows);
  for (let r = 0; r < m.rows; r++) {
    let sum = 0;
    for (let k = r * m.cols; k < (r + 1) * m.cols; k++) sum += Math.abs(m.data[k]);
    out[r] = sum;
  }
  return out;
}

/** `‖M[:, j]‖₁` for every column j, `[cols]`, summed in float64. */
export function columnAbsSums(m: Matrix): Float64Array {
  const out = new Float64Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    const row = r * m.cols;
    for (let c = 0; c < m.cols; c++) out[c] += Math.abs(m.data[row + c]);
  }
  return out;
}
