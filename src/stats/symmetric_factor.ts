/**
 * A KFAC factor (docs/METHOD.md §2 "Hessian by KFAC"): a symmetric PSD matrix
 * `M = s · Σ_t r_t r_tᵀ` over calibration tokens, held one of two ways:
 *
 * - dense, `[n, n]` float32 (what DRD needs for attention, and SCP for the
 *   MLP's input-side `A₁` and output-side `G₂`);
 * - as its rows `r_t` (`[N, n]` in chunks) while the token count N is at
 *   most n/2, for the factors SCP reduces to column L1 norms only (`G₁` and `A₂`,
 *   the MLP width m on a side): `N·n` floats instead of `n²`. On OPT-1.3B with
 *   2048 calibration tokens that is 64 MiB instead of 256 MiB per factor.
 *
 * Either way consumers ask for {@link SymmetricFactor.dense} or
 * {@link SymmetricFactor.columnAbsSums}; a row-held factor computes the column
 * sums block by block without forming `M`. Past n/2 tokens such a factor is
 * summed densely and finalized straight to its column sums
 * ({@link columnsFactor}): the matrix is neither symmetrised, scaled nor kept.
 *
 * @module
 */
import { gramColumnsAccumulate } from "../linalg/gemm.ts";
import { type Matrix, rowAbsSums } from "../linalg/matrix.ts";

/** A symmetric `[size, size]` factor, dense or row-held (module doc). */
export interface SymmetricFactor {
  /** The side n of the `[n, n]` matrix. */
  readonly size: number;
  /** The matrix `[n, n]` (a row-held factor forms it on each call: avoid for wide factors). */
  dense(): Matrix;
  /** `Σ_i |M_ij|` for each column j, `[n]`. */
  columnAbsSums(): Float64Array;
  /**
   * What the factor is held as: the dense matrix, or the row chunks and
   * scale. A factor written to a file and rebuilt from this ({@link heldFactor})
   * computes the very same numbers, so a block scored on another machine
   * gives the same shard bytes (docs/DISTRIBUTED.md "What is idempotent").
   */
  readonly held: HeldFactor;
}

/** The data a {@link SymmetricFactor} is held as (dense, row chunks times a scale, or column sums only). */
export type HeldFactor =
  | { readonly kind: "dense"; readonly matrix: Matrix }
  | { readonly kind: "rows"; readonly chunks: readonly Matrix[]; readonly scale: number }
  | { readonly kind: "columns"; readonly sums: Float64Array };

/** The factor of `held` again (the inverse of {@link SymmetricFactor.held}). */
export function heldFactor(held: HeldFactor): SymmetricFactor {
  if (held.kind === "dense") return denseFactor(held.matrix);
  return held.kind === "rows" ? rowFactor(held.chunks, held.scale) : columnsFactor(held.sums);
}

/**
 * A factor of which only the column L1 norms `Σ_i |M_ij|` are kept (`[n]`):
 * SCP's `G₁` and `A₂` once their token count passed half their side
 * (src/stats/kfac.ts), which no consumer reads otherwise. The `[n, n]`
 * matrix is not kept, so {@link SymmetricFactor.dense} throws.
 */
export function columnsFactor(sums: Float64Array): SymmetricFactor {
  return {
    size: sums.length,
    held: { kind: "columns", sums },
    dense: () => {
      throw new Error(`This ${sums.length}×${sums.length} KFAC factor keeps only its column L1 norms (SCP's G₁ or A₂): its matrix is not held`);
    },
    columnAbsSums: () => sums.slice(),
  };
}

/**
 * `Σ_i |M_ij| · scale` for each column j of the symmetric `M` whose upper
 * triangle (diagonal included) `upper` holds, `[n]`, in float64: one pass over
 * half the matrix, each entry above the diagonal added to its column and, as
 * its mirror image, to the column of its row. The lower triangle is never read.
 * A non-finite entry makes its column's sum non-finite.
 */
export function upperColumnAbsSums(upper: Matrix, scale: number): Float64Array {
  const n = upper.rows;
  if (upper.cols !== n) throw new Error(`upperColumnAbsSums: a ${upper.rows}×${upper.cols} matrix has no upper triangle`);
  const data = upper.data;
  const sums = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = i * n;
    let mirrored = 0; // Σ_{j>i} |M_ij|, which column i gets from the lower triangle
    sums[i] += Math.abs(data[row + i]);
    for (let j = i + 1; j < n; j++) {
      const v = Math.abs(data[row + j]);
      sums[j] += v;
      mirrored += v;
    }
    sums[i] += mirrored;
  }
  for (let j = 0; j < n; j++) sums[j] *= scale;
  return sums;
}

/** Columns per block when reducing a row-held factor: a `[n, 512]` float32 block at a time. */
const COLUMN_BLOCK = 512;

/** A factor held as its dense matrix. */
export function denseFactor(matrix: Matrix): SymmetricFactor {
  if (matrix.rows !== matrix.cols) throw new Error(`A symmetric factor must be square, got ${matrix.rows}×${matrix.cols}`);
  return {
    size: matrix.rows,
    held: { kind: "dense", matrix },
    dense: () => matrix,
    columnAbsSums: () => rowAbsSums(matrix), // symmetric: the column sums, in the same order
  };
}

/**
 * A factor `scale · Σ_chunks RᵀR` held as its row chunks (each `[rows_c, n]`,
 * e.g. one calibration chunk's γ or augmented x). `columnBlock` is how many
 * columns of the matrix are formed at a time.
 */
export function rowFactor(chunks: readonly Matrix[], scale: number, columnBlock = COLUMN_BLOCK): SymmetricFactor {
  if (chunks.length === 0) throw new Error("A row-held factor needs at least one chunk of rows");
  const n = chunks[0].cols;
  for (const c of chunks) {
    if (c.cols !== n) throw new Error(`Row-held factor chunks differ in width: ${c.cols} and ${n}`);
  }
  // A reduction sweeps n/columnBlock blocks through one buffer: fresh
  // buffers would leave up to n² floats of garbage behind.
  const blockBuffer = () => new Float32Array(n * Math.min(n, columnBlock));
  /** `scale · (RᵀR)[0:rows, from:to]`, `[rows, to − from]`, formed in (a view of) `buffer`. */
  const columns = (buffer: Float32Array, from: number, to: number, rows = n): Matrix => {
    const block: Matrix = { rows, cols: to - from, data: buffer.subarray(0, rows * (to - from)) };
    block.data.fill(0);
    for (const c of chunks) gramColumnsAccumulate(block, c, from, to, rows);
    for (let k = 0; k < block.data.length; k++) block.data[k] *= scale;
    return block;
  };
  return {
    size: n,
    held: { kind: "rows", chunks, scale },
    dense: () => {
      const out = new Float32Array(n * n); // [n, n]
      const buffer = blockBuffer();
      for (let from = 0; from < n; from += columnBlock) {
        const to = Math.min(n, from + columnBlock);
        const block = columns(buffer, from, to);
        const w = to - from;
        for (let i = 0; i < n; i++) out.set(block.data.subarray(i * w, (i + 1) * w), i * n + from);
      }
      return { rows: n, cols: n, data: out };
    },
    // Symmetry halves the work: block [0, to) × [from, to) adds each entry
    // above the diagonal block to its column and, as its mirror image, to the
    // column of its row.
    columnAbsSums: () => {
      const out = new Float64Array(n);
      const buffer = blockBuffer();
      for (let from = 0; from < n; from += columnBlock) {
        const to = Math.min(n, from + columnBlock);
        const block = columns(buffer, from, to, to); // [to, w]
        const w = to - from;
        for (let i = 0; i < to; i++) {
          const mirrored = i < from;
          let rowSum = 0;
          for (let j = 0; j < w; j++) {
            const v = Math.abs(block.data[i * w + j]);
            out[from + j] += v;
            rowSum += v;
          }
          if (mirrored) out[i] += rowSum;
        }
      }
      return out;
    },
  };
}
