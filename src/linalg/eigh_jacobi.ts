/**
 * Symmetric eigendecomposition in pure TypeScript: cyclic two-sided Jacobi
 * in float64, the fallback of `eigh.ts` when LAPACK is absent (docs/DESIGN.md
 * "Tensors"). Simple and accurate (each rotation is exactly orthogonal and
 * the result is backward stable); O(sweeps · n³) with about 6-10 sweeps.
 *
 * @module
 */
import type { EighResult } from "./eigh.ts";
import type { Matrix } from "./matrix.ts";
import { jacobiRotation, rotateRuns } from "./rotation.ts";

const MAX_SWEEPS = 64;

/**
 * Eigenvalues (ascending) and eigenvectors (columns) of the symmetric matrix
 * whose upper triangle is that of `a` (already checked: square, finite).
 */
export function jacobiEigh(a: Matrix): EighResult {
  const n = a.rows;
  const s = new Float64Array(n * n); // row-major [n, n], symmetric working copy
  let sq = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const x = a.data[i * n + j];
      s[i * n + j] = x;
      s[j * n + i] = x;
      sq += i === j ? x * x : 2 * x * x;
    }
  }
  const v = new Float64Array(n * n); // column-major [n, n]: column p at p*n
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  // Off-diagonal entries below `floor` perturb the eigenvalues by at most ε‖A‖_F in all.
  const floor = (Number.EPSILON * Math.sqrt(sq)) / n;
  rotateToDiagonal(s, v, n, floor);

  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => s[x * n + x] - s[y * n + y]);
  const values = Float32Array.from(order, (j) => s[j * n + j]);
  const vectors = new Float32Array(n * n); // [n, n], column j = eigenvector j
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) vectors[i * n + j] = v[order[j] * n + i];
  }
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}

/**
 * Applies Jacobi rotations `S ← JᵀSJ`, `V ← VJ` pair by pair until every
 * off-diagonal entry is negligible: at most ε·sqrt(|s_pp s_qq|) (relative
 * accuracy) or at most `floor`. Throws if {@link MAX_SWEEPS} do not suffice.
 */
function rotateToDiagonal(s: Float64Array, v: Float64Array, n: number, floor: number): void {
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = s[p * n + q];
        const app = s[p * n + p];
        const aqq = s[q * n + q];
        if (Math.abs(apq) <= floor || Math.abs(apq) <= Number.EPSILON * Math.sqrt(Math.abs(app * aqq))) {
          continue;
        }
        rotated = true;
        // The rotation J that zeroes a_pq; S ← Jᵀ S J (columns, then rows p and q), V ← V J.
        const [c, sn] = jacobiRotation((aqq - app) / (2 * apq));
        const po = p * n;
        const qo = q * n;
        rotateRuns(s, p, q, n, n, c, sn);
        rotateRuns(s, po, qo, n, 1, c, sn);
        rotateRuns(v, po, qo, n, 1, c, sn);
        s[po + q] = 0;
        s[qo + p] = 0;
      }
    }
    if (!rotated) return;
  }
  throw new Error(`eigh (js): Jacobi did not converge in ${MAX_SWEEPS} sweeps on a ${n}×${n} matrix`);
}
