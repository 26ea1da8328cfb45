import { describe, expect, test } from "vitest";
import { eigh, type EighResult } from "../../src/linalg/eigh.ts";
import { lapackAvailable } from "../../src/linalg/gemm.ts";
import { linalgUnavailableReason } from "../../src/linalg/lapack_ffi.ts";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { logspaceDescending, normalRng, orthogonalityError, randomMatrix, withEigenvalues } from "./reference.ts";

const HAS_LAPACK = lapackAvailable();

/**
 * Allowed errors per backend, relative to max |λ|: the residual
 * max |AV − VΛ|, max |VᵀV − I|, and |λ_i − λ_ref,i| against a known spectrum.
 * LAPACK works in float32, the Jacobi fallback in float64 (only the final
 * rounding to float32 remains).
 */
const BACKENDS = [
  { backend: "lapack" as const, skip: !HAS_LAPACK, residual: 5e-6, orth: 5e-6, spectrum: 5e-6 },
  { backend: "js" as const, skip: false, residual: 5e-7, orth: 3e-7, spectrum: 3e-7 },
];

function randomSymmetric(n: number, seed: number): Matrix {
  const b = randomMatrix(n, n, normalRng(seed));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const x = b.data[i * n + j] + b.data[j * n + i];
      b.data[i * n + j] = x;
      b.data[j * n + i] = x;
    }
  }
  return b;
}

/** max |AV − VΛ| / max |λ|, in float64. */
function residual(a: Matrix, { values, vectors }: EighResult): number {
  const n = a.rows;
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let av = 0;
      for (let p = 0; p < n; p++) av += a.data[i * n + p] * vectors.data[p * n + j];
      worst = Math.max(worst, Math.abs(av - vectors.data[i * n + j] * values[j]));
    }
  }
  const scale = Math.max(Math.abs(values[0]), Math.abs(values[n - 1]));
  return scale === 0 ? worst : worst / scale;
}

for (const { backend, skip, residual: resBound, orth, spectrum } of BACKENDS) {
  const reason = skip ? ` (skipped: needs Debian liblapacke and libopenblas0: ${linalgUnavailableReason()})` : "";

  function checked(label: string, a: Matrix, expected?: number[]): EighResult {
    const before = a.data.slice();
    const res = eigh(a, { backend });
    expect(a.data).toEqual(before);
    const n = a.rows;
    expect(res.values.length).toBe(n);
    expect([res.vectors.rows, res.vectors.cols]).toEqual([n, n]);
    for (let i = 1; i < n; i++) expect(res.values[i]).toBeGreaterThanOrEqual(res.values[i - 1]);
    const r = residual(a, res);
    const o = orthogonalityError(res.vectors);
    let line = `eigh ${backend} ${label}: max|AV−VΛ|/max|λ| ${r.toExponential(1)} (≤ ${resBound.toExponential(0)}), ` +
      `max|VᵀV−I| ${o.toExponential(1)} (≤ ${orth.toExponential(0)})`;
    if (expected) {
      const sorted = [...expected].sort((x, y) => x - y);
      const scale = Math.max(...sorted.map(Math.abs));
      let worst = 0;
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(res.values[i] - sorted[i]) / scale);
      line += `, max|λ−λref|/max|λ| ${worst.toExponential(1)} (≤ ${spectrum.toExponential(0)})`;
      expect(worst).toBeLessThanOrEqual(spectrum);
    }
    console.log(line);
    expect(r).toBeLessThanOrEqual(resBound);
    expect(o).toBeLessThanOrEqual(orth);
    return res;
  }

  describe.skipIf(skip)(`eigh, ${backend} backend${reason}`, () => {
    test("decomposes a random symmetric matrix", () => {
      checked("random 40×40", randomSymmetric(40, 1));
    });

    test("recovers a known spectrum with negative and repeated eigenvalues", () => {
      const lambda = [7, -3, 2, 0, -3, 2, 0.5, 0, 2, -1, 4, 4, 0, -6, 1.25, 3, 3, 0.1, -0.1, 5];
      checked("known spectrum 20×20", withEigenvalues(lambda, normalRng(2)), lambda);
    });

    test("decomposes rank-deficient and ill-conditioned PSD matrices (KFAC factors)", () => {
      const rank5 = [5, 4, 3, 2, 1, ...new Array<number>(25).fill(0)];
      checked("PSD rank 5 of 30×30", withEigenvalues(rank5, normalRng(3)), rank5);
      const cond = logspaceDescending(1, 1e-6, 30);
      checked("PSD cond 1e6 30×30", withEigenvalues(cond, normalRng(4)), cond);
    });

    test("sorts an already diagonal matrix and handles 1×1", () => {
      const diag = [3, -1, 2, 0, 5];
      const a = { rows: 5, cols: 5, data: new Float32Array(25) };
      diag.forEach((x, i) => (a.data[i * 5 + i] = x));
      const res = checked("diagonal 5×5", a, diag);
      // Column j is ± the standard basis vector of the j-th smallest diagonal entry.
      const source = [1, 3, 2, 0, 4];
      for (let j = 0; j < 5; j++) expect(Math.abs(res.vectors.data[source[j] * 5 + j])).toBeCloseTo(1, 6);
      const one = eigh({ rows: 1, cols: 1, data: Float32Array.of(-2.5) }, { backend });
      expect(Array.from(one.values)).toEqual([-2.5]);
      expect(Math.abs(one.vectors.data[0])).toBe(1);
    });
  });
}

describe.skipIf(!HAS_LAPACK)(`eigh, lapack and js agree${HAS_LAPACK ? "" : " (skipped: needs Debian liblapacke and libopenblas0)"}`, () => {
  test("on the eigenvalues of random and ill-conditioned symmetric matrices", () => {
    const cases: Array<[string, Matrix]> = [
      ["random 25×25", randomSymmetric(25, 10)],
      ["PSD cond 1e6 25×25", withEigenvalues(logspaceDescending(1, 1e-6, 25), normalRng(11))],
    ];
    for (const [label, a] of cases) {
      const lapack = eigh(a, { backend: "lapack" }).values;
      const js = eigh(a, { backend: "js" }).values;
      const scale = Math.max(Math.abs(js[0]), Math.abs(js[js.length - 1]));
      let worst = 0;
      for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(lapack[i] - js[i]) / scale);
      console.log(`eigh lapack vs js ${label}: max |Δλ|/max|λ| ${worst.toExponential(1)} (≤ 5e-6)`);
      expect(worst).toBeLessThanOrEqual(5e-6);
    }
  });
});

describe("eigh input checks", () => {
  test("rejects non-square, non-symmetric and non-finite matrices", () => {
    expect(() => eigh(randomMatrix(3, 4, normalRng(20)))).toThrow("eigh: matrix is 3×4: expected a square matrix");
    const a = randomSymmetric(4, 21);
    a.data[1 * 4 + 3] += 1;
    expect(() => eigh(a)).toThrow(/eigh: matrix is not symmetric: \|a\[3, 1\] − a\[1, 3\]\| = 1 exceeds/);
    const b = randomSymmetric(3, 22);
    b.data[4] = Number.POSITIVE_INFINITY;
    expect(() => eigh(b)).toThrow("eigh: matrix has a non-finite entry Infinity at (1, 1)");
  });
});
