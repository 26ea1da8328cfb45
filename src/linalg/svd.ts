/**
 * Singular value decomposition, the workhorse of DRD (docs/METHOD.md §2 "DRD":
 * `W = Σ_i s_i u_i v_iᵀ`) and of the rank-r baselines (§3 Selective Rank
 * Compression). LAPACK `sgesdd` (divide and conquer) through `lapack_ffi.ts`
 * when loaded, else the pure-TS one-sided Jacobi of `svd_jacobi.ts`.
 *
 * Accuracy: both backends are backward stable, ‖A − U S Vᵀ‖_F / ‖A‖_F and
 * ‖UᵀU − I‖ are a small multiple of float32 ε (see test/linalg/svd.test.ts
 * for the bounds). A float32 input is itself only known to ε₃₂·‖A‖, so
 * singular values below about 1e-7·s₁ are noise on either backend (LAPACK
 * computes in float32, Jacobi in float64); on a matrix of condition 1e6
 * the small ones agree between the backends to about 1e-6·s₁ absolute, not
 * relative. A float64 `dgesdd` path would not change that for float32 data,
 * so there is none.
 *
 * @module
 */
import { libraryFor, type LinalgBackend } from "./lapack_ffi.ts";
import { checkFinite, type Matrix } from "./matrix.ts";
import { giveScratch, takeScratch } from "./scratch_arrays.ts";
import { jacobiSvd } from "./svd_jacobi.ts";

/** `A = U diag(s) Vᵀ`, with `s` descending and the columns of `u` and rows of `vt` orthonormal. */
export interface SvdResult {
  /** Left singular vectors: `[rows, k]` thin, `[rows, rows]` full. */
  u: Matrix;
  /** Singular values `[k]`, descending, `k = min(rows, cols)`. */
  s: Float32Array;
  /** Right singular vectors as rows: `[k, cols]` thin, `[cols, cols]` full. */
  vt: Matrix;
}

/** Options of {@link svd}. */
export interface SvdOptions {
  /** Square `u` and `vt` (complete bases) instead of the thin k = min(rows, cols) factors. */
  full?: boolean;
  /** Force an implementation; default LAPACK when loaded, else `"js"`. */
  backend?: LinalgBackend;
}

/**
 * The singular value decomposition of `a` (any shape, finite entries; not
 * modified). Thin by default. Throws on a malformed or non-finite matrix,
 * or when `backend: "lapack"` is requested and unavailable.
 */
export function svd(a: Matrix, options: SvdOptions = {}): SvdResult {
  checkFinite(a, "svd: matrix");
  const full = options.full ?? false;
  const library = libraryFor("svd", options.backend);
  if (!library) return jacobiSvd(a, full);

  // The row-major A is the column-major Aᵀ (cols×rows). LAPACK's Aᵀ = U' S V'ᵀ
  // gives A = V' S U'ᵀ, and in row-major terms U' (column-major) is exactly
  // our vt and V'ᵀ is exactly our u: no transposition anywhere.
  const { rows, cols } = a;
  const k = Math.min(rows, cols);
  const work = takeScratch(a.data.length); // [rows, cols], destroyed by sgesdd, given back below
  work.set(a.data);
  const s = new Float32Array(k);
  const uRows = full ? rows : k;
  const vtRows = full ? cols : k;
  const u = new Float32Array(rows * uRows); // [rows, k or rows]
  const vt = new Float32Array(vtRows * cols); // [k or cols, cols]
  const info = library.sgesdd(full ? "A" : "S", cols, rows, work, cols, s, vt, cols, u, uRows);
  giveScratch(work);
  if (info !== 0) {
    throw new Error(
      info > 0
        ? `svd (lapack): sgesdd did not converge on a ${rows}×${cols} matrix (info ${info})`
        : `svd (lapack): LAPACKE_sgesdd rejected its arguments on a ${rows}×${cols} matrix (info ${info})`,
    );
  }
  return { u: { rows, cols: uRows, data: u }, s, vt: { rows: vtRows, cols, data: vt } };
}
