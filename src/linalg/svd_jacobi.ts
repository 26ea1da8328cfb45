/**
 * Singular value decomposition in pure TypeScript: one-sided (Hestenes)
 * Jacobi in float64, the fallback of `svd.ts` when LAPACK is absent
 * (docs/DESIGN.md "Tensors"). Chosen over Golub-Kahan because it is short, needs
 * no bidiagonalisation, and computes even tiny singular values to high
 * relative accuracy, so rank-deficient and ill-conditioned inputs come out
 * right. It costs O(sweeps · n² · m) with about 6-10 sweeps: slow, not wrong.
 *
 * A wide matrix (rows < cols) is decomposed through its transpose, whose
 * column-major form is the row-major input itself.
 *
 * @module
 */
import type { Matrix } from "./matrix.ts";
import { jacobiRotation, rotateRuns } from "./rotation.ts";
import type { SvdResult } from "./svd.ts";

const MAX_SWEEPS = 64;

/**
 * The SVD of `a` (already checked: non-empty, finite). Thin unless `full`;
 * singular values descending; left vectors for zero singular values (and the
 * extra columns of a full `u`) complete an orthonormal basis.
 */
export function jacobiSvd(a: Matrix, full: boolean): SvdResult {
  const wide = a.rows < a.cols;
  // Work on the tall view B (m×n, m ≥ n): B = A, or Aᵀ for a wide A.
  const m = wide ? a.cols : a.rows;
  const n = wide ? a.rows : a.cols;
  const w = new Float64Array(m * n); // column-major [n columns of length m]: B, then B·V
  if (wide) {
    w.set(a.data);
  } else {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) w[j * m + i] = a.data[i * n + j];
    }
  }
  const v = new Float64Array(n * n); // column-major [n, n]: right vectors of B
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  orthogonalizeColumns(w, v, m, n);

  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let sq = 0;
    for (let i = j * m; i < (j + 1) * m; i++) sq += w[i] * w[i];
    norms[j] = Math.sqrt(sq);
  }
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const s = Float32Array.from(order, (j) => norms[j]);

  const uCols = full ? m : n;
  const ub = new Float64Array(m * uCols); // column-major [uCols columns of length m]: left vectors of B
  const filled = new Array<boolean>(uCols).fill(false);
  for (let p = 0; p < n; p++) {
    const j = order[p];
    if (norms[j] === 0) continue;
    const inv = 1 / norms[j];
    for (let i = 0; i < m; i++) ub[p * m + i] = w[j * m + i] * inv;
    filled[p] = true;
  }
  completeBasis(ub, m, filled);

  if (wide) {
    // A = Bᵀ = V_B S U_Bᵀ: u = V_B (rows×rows), vt = U_Bᵀ, whose row-major form is ub itself.
    const u = new Float32Array(n * n); // [rows, k]
    for (let i = 0; i < n; i++) {
      for (let p = 0; p < n; p++) u[i * n + p] = v[order[p] * n + i];
    }
    return {
      u: { rows: n, cols: n, data: u },
      s,
      vt: { rows: uCols, cols: m, data: new Float32Array(ub) },
    };
  }
  const u = new Float32Array(m * uCols); // [rows, k or rows]
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < uCols; p++) u[i * uCols + p] = ub[p * m + i];
  }
  const vt = new Float32Array(n * n); // [k, cols]
  for (let p = 0; p < n; p++) vt.set(v.subarray(order[p] * n, (order[p] + 1) * n), p * n);
  return { u: { rows: m, cols: uCols, data: u }, s, vt: { rows: n, cols: n, data: vt } };
}

/**
 * Rotates pairs of columns of `w` (m×n, column-major) until every pair is
 * orthogonal to within `m·ε` relative to their norms, applying the same
 * rotations to `v`. Cyclic order; throws if {@link MAX_SWEEPS} do not suffice.
 */
function orthogonalizeColumns(w: Float64Array, v: Float64Array, m: number, n: number): void {
  const tol = m * Number.EPSILON;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      const po = p * m;
      for (let q = p + 1; q < n; q++) {
        const qo = q * m;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = w[po + i];
          const y = w[qo + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= tol * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation that makes columns p and q orthogonal.
        const [c, sn] = jacobiRotation((beta - alpha) / (2 * gamma));
        rotateRuns(w, po, qo, m, 1, c, sn);
        rotateRuns(v, p * n, q * n, n, 1, c, sn);
      }
    }
    if (!rotated) return;
  }
  throw new Error(`svd (js): one-sided Jacobi did not converge in ${MAX_SWEEPS} sweeps on a ${m}×${n} matrix`);
}

/**
 * Fills the columns of `q` (m×cols, column-major) not marked in `filled`
 * with unit vectors orthogonal to all others: for each, the standard basis
 * vector least covered by the current columns, orthogonalised twice
 * (classical Gram-Schmidt with reorthogonalisation).
 */
function completeBasis(q: Float64Array, m: number, filled: boolean[]): void {
  const covered = new Float64Array(m); // Σ over filled columns of q[i]², row by row
  for (let c = 0; c < filled.length; c++) {
    if (!filled[c]) continue;
    for (let i = 0; i < m; i++) covered[i] += q[c * m + i] ** 2;
  }
  for (let c = 0; c < filled.length; c++) {
    if (filled[c]) continue;
    let best = 0;
    for (let i = 1; i < m; i++) if (covered[i] < covered[best]) best = i;
    const x = new Float64Array(m);
    x[best] = 1;
    for (let pass = 0; pass < 2; pass++) {
      for (let d = 0; d < filled.length; d++) {
        if (!filled[d]) continue;
        let dot = 0;
        for (let i = 0; i < m; i++) dot += q[d * m + i] * x[i];
        for (let i = 0; i < m; i++) x[i] -= dot * q[d * m + i];
      }
    }
    let sq = 0;
    for (let i = 0; i < m; i++) sq += x[i] * x[i];
    const inv = 1 / Math.sqrt(sq);
    for (let i = 0; i < m; i++) {
      q[c * m + i] = x[i] * inv;
      covered[i] += q[c * m + i] ** 2;
    }
    filled[c] = true;
  }
}
