/**
 * Independent float64 references and seeded random data for the GradOT
 * numerics tests (stats/, score/, compress/). Everything here is written the
 * slow, obvious way, in docs/METHOD.md's out×in view where it matters, so the
 * tests compare the vectorised kernel-layout code against it. The seeded
 * generators are the linear-algebra room's (`test/linalg/reference.ts`).
 */
import type { Matrix } from "../../src/linalg/matrix.ts";
import { randomMatrix } from "../linalg/reference.ts";

export { normalRng, randomMatrix } from "../linalg/reference.ts";

/** A float64 dense matrix, row-major. */
export interface Dense {
  rows: number;
  cols: number;
  data: Float64Array;
}

/** A random symmetric positive semi-definite n×n float32 matrix (`XᵀX / n`). */
export function randomPsd(n: number, rng: () => number): Matrix {
  const x = toDense(randomMatrix(n + 3, n, rng));
  const p = multiply(transpose(x), x);
  return toMatrix(scaleDense(p, 1 / n));
}

/** Entry (i, j). */
export function at(m: Matrix | Dense, i: number, j: number): number {
  return m.data[i * m.cols + j];
}

export function toDense(m: Matrix): Dense {
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data) };
}

export function toMatrix(d: Dense): Matrix {
  return { rows: d.rows, cols: d.cols, data: Float32Array.from(d.data) };
}

export function zeros(rows: number, cols: number): Dense {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function transpose(m: Matrix | Dense): Dense {
  const out = zeros(m.cols, m.rows);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.cols; j++) out.data[j * m.rows + i] = at(m, i, j);
  }
  return out;
}

/** Triple-loop product in float64. */
export function multiply(a: Matrix | Dense, b: Matrix | Dense): Dense {
  if (a.cols !== b.rows) throw new Error(`multiply: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const out = zeros(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let p = 0; p < a.cols; p++) s += at(a, i, p) * at(b, p, j);
      out.data[i * b.cols + j] = s;
    }
  }
  return out;
}

export function scaleDense(m: Dense, c: number): Dense {
  return { rows: m.rows, cols: m.cols, data: m.data.map((v) => v * c) };
}

/** Entrywise L1 norm `Σ |m_ij|`. */
export function l1(m: Dense): number {
  return m.data.reduce((s, v) => s + Math.abs(v), 0);
}

/** Frobenius inner product `⟨a, b⟩ = Σ a_ij b_ij` (same shapes). */
export function frobenius(a: Matrix | Dense, b: Matrix | Dense): number {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error("frobenius: shapes differ");
  let s = 0;
  for (let k = 0; k < a.data.length; k++) s += a.data[k] * b.data[k];
  return s;
}

/**
 * The explicit GCS of docs/METHOD.md §2 for one linear, in the out×in view:
 * `‖G δ A‖₁ − λ ⟨g, δ⟩`, forming `G δ A` with full products.
 */
export function explicitGcs(
  G: Matrix | Dense,
  delta: Dense,
  A: Matrix | Dense,
  g: Matrix | Dense,
  lambda: number,
): number {
  return l1(multiply(multiply(G, delta), A)) - lambda * frobenius(g, delta);
}

/** Largest `|a − b|` over entries (same length). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} and ${b.length}`);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k] - b[k]));
  return m;
}

/** Largest `|v|`. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]));
  return m;
}
