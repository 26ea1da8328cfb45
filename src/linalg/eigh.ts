/**
 * Eigendecomposition of a symmetric matrix, for the KFAC factors `A` and `G`
 * (docs/METHOD.md §2 "Hessian by KFAC": symmetric positive semi-definite) and any
 * other symmetric matrix. LAPACK `ssyevd` through `lapack_ffi.ts` when loaded,
 * else the pure-TS cyclic Jacobi of `eigh_jacobi.ts`.
 *
 * @module
 */
import { jacobiEigh } from "./eigh_jacobi.ts";
import { libraryFor, type LinalgBackend } from "./lapack_ffi.ts";
import { checkFinite, type Matrix } from "./matrix.ts";

/** `A = V diag(values) Vᵀ` with `values` ascending and `V` orthogonal. */
export interface EighResult {
  /** Eigenvalues `[n]`, ascending. */
  values: Float32Array;
  /** Eigenvectors `[n, n]`: column j belongs to `values[j]`. */
  vectors: Matrix;
}

/** Options of {@link eigh}. */
export interface EighOptions {
  /** Force an implementation; default LAPACK when loaded, else `"js"`. */
  backend?: LinalgBackend;
}

/**
 * How far apart `a[i, j]` and `a[j, i]` may be, relative to max |a|, for `a`
 * to count as symmetric: float32 products such as a tfjs `xᵀx` differ by
 * ~1e-7 between the two triangles; a matrix that is not symmetric, by O(1).
 */
const SYMMETRY_TOLERANCE = 1e-4;

/**
 * Eigenvalues (ascending) and orthonormal eigenvectors (columns) of the
 * symmetric matrix `a` (not modified). Both backends read the upper triangle
 * (row-major); the lower one must match it within {@link SYMMETRY_TOLERANCE}
 * · max |a|, else this throws naming the worst pair.
 */
export function eigh(a: Matrix, options: EighOptions = {}): EighResult {
  checkFinite(a, "eigh: matrix");
  checkSymmetric(a);
  const library = libraryFor("eigh", options.backend);
  if (!library) return jacobiEigh(a);

  // Row-major upper triangle = column-major lower triangle, which ssyevd reads.
  const n = a.rows;
  const vectors = a.data.slice(); // [n, n], becomes the eigenvectors
  const values = new Float32Array(n);
  const info = library.ssyevd(n, vectors, n, values);
  if (info !== 0) {
    throw new Error(
      info > 0
        ? `eigh (lapack): ssyevd did not converge on a ${n}×${n} matrix (info ${info})`
        : `eigh (lapack): LAPACKE_ssyevd rejected its arguments on a ${n}×${n} matrix (info ${info})`,
    );
  }
  // ssyevd stores eigenvector j as column j in column-major order, i.e. as row j
  // here: transpose in place so that column j holds it.
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const x = vectors[i * n + j];
      vectors[i * n + j] = vectors[j * n + i];
      vectors[j * n + i] = x;
    }
  }
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}

function checkSymmetric(a: Matrix): void {
  const { rows: n, cols, data } = a;
  if (n !== cols) throw new Error(`eigh: matrix is ${n}×${cols}: expected a square matrix`);
  let maxAbs = 0;
  for (let i = 0; i < data.length; i++) maxAbs = Math.max(maxAbs, Math.abs(data[i]));
  let worst = 0;
  let wi = 0;
  let wj = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const d = Math.abs(data[i * n + j] - data[j * n + i]);
      if (d > worst) [worst, wi, wj] = [d, i, j];
    }
  }
  if (worst > SYMMETRY_TOLERANCE * maxAbs) {
    throw new Error(
      `eigh: matrix is not symmetric: |a[${wi}, ${wj}] − a[${wj}, ${wi}]| = ${worst} ` +
        `exceeds ${SYMMETRY_TOLERANCE} × max |a| = ${SYMMETRY_TOLERANCE * maxAbs}`,
    );
  }
}
