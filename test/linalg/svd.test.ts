import { describe, expect, test } from "vitest";
import { lapackAvailable } from "../../src/linalg/gemm.ts";
import { linalgUnavailableReason } from "../../src/linalg/lapack_ffi.ts";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { svd, type SvdResult } from "../../src/linalg/svd.ts";
import {
  logspaceDescending, normalRng, orthogonalityError, randomMatrix, reconstructionError,
  withSingularValues,
} from "./reference.ts";

const HAS_LAPACK = lapackAvailable();

/**
 * Allowed errors per backend. LAPACK computes in float32 (a small multiple of
 * ε₃₂ ≈ 6e-8 · √n); the Jacobi fallback in float64, so only the final
 * rounding to float32 remains. `spectrum` bounds |s_i − σ_i| / σ₁ against a
 * known spectrum (Weyl: the float32 rounding of A alone moves it ~1e-7).
 */
const BACKENDS = [
  { backend: "lapack" as const, skip: !HAS_LAPACK, recon: 5e-6, orth: 5e-6, spectrum: 5e-6 },
  { backend: "js" as const, skip: false, recon: 3e-7, orth: 3e-7, spectrum: 3e-7 },
];

function copy(a: Matrix): Matrix {
  return { rows: a.rows, cols: a.cols, data: a.data.slice() };
}

for (const { backend, skip, recon, orth, spectrum } of BACKENDS) {
  const reason = skip ? ` (skipped: needs Debian liblapacke and libopenblas0: ${linalgUnavailableReason()})` : "";

  /** Runs svd and asserts every property of a thin or full SVD; returns the result. */
  function checked(label: string, a: Matrix, full = false): SvdResult {
    const before = a.data.slice();
    const res = svd(a, { backend, full });
    expect(a.data).toEqual(before);
    const k = Math.min(a.rows, a.cols);
    expect([res.u.rows, res.u.cols]).toEqual([a.rows, full ? a.rows : k]);
    expect([res.vt.rows, res.vt.cols]).toEqual([full ? a.cols : k, a.cols]);
    expect(res.s.length).toBe(k);
    for (let i = 0; i < k; i++) {
      expect(res.s[i]).toBeGreaterThanOrEqual(0);
      if (i > 0) expect(res.s[i]).toBeLessThanOrEqual(res.s[i - 1]);
    }
    const r = reconstructionError(a, res.u, res.s, res.vt);
    const ou = orthogonalityError(res.u);
    const ov = orthogonalityError(res.vt, true);
    console.log(
      `svd ${backend} ${label}: ‖A−USVᵀ‖/‖A‖ ${r.toExponential(1)} (≤ ${recon.toExponential(0)}), ` +
        `‖UᵀU−I‖max ${ou.toExponential(1)}, ‖VᵀV−I‖max ${ov.toExponential(1)} (≤ ${orth.toExponential(0)})`,
    );
    expect(r).toBeLessThanOrEqual(recon);
    expect(ou).toBeLessThanOrEqual(orth);
    expect(ov).toBeLessThanOrEqual(orth);
    return res;
  }

  /** Asserts |s_i − σ_i| ≤ spectrum · σ₁ for a known spectrum σ (zero-padded to k). */
  function expectSpectrum(label: string, s: Float32Array, sigma: number[]): void {
    let worst = 0;
    for (let i = 0; i < s.length; i++) worst = Math.max(worst, Math.abs(s[i] - (sigma[i] ?? 0)));
    worst /= sigma[0];
    console.log(`svd ${backend} ${label}: max |s−σ|/σ₁ ${worst.toExponential(1)} (≤ ${spectrum.toExponential(0)})`);
    expect(worst).toBeLessThanOrEqual(spectrum);
  }

  describe.skipIf(skip)(`svd, ${backend} backend${reason}`, () => {
    test("decomposes a random square matrix", () => {
      checked("random 40×40", randomMatrix(40, 40, normalRng(1)));
    });

    test("decomposes tall and wide matrices with their known spectrum", () => {
      const sigma = [9, 7, 5, 3, 2, 1.5, 1, 0.5, 0.25, 0.1];
      const tall = withSingularValues(60, 10, sigma, normalRng(2));
      expectSpectrum("tall 60×10", checked("tall 60×10", tall).s, sigma);
      const wide = withSingularValues(10, 60, sigma, normalRng(3));
      expectSpectrum("wide 10×60", checked("wide 10×60", wide).s, sigma);
      checked("random wide 25×60", randomMatrix(25, 60, normalRng(4)));
    });

    test("finds the zero singular values of a rank-deficient matrix", () => {
      const sigma = [5, 4, 3, 2, 1, 0.5, 0.2, 0.1];
      const a = withSingularValues(40, 30, sigma, normalRng(5));
      expectSpectrum("rank 8 of 40×30", checked("rank 8 of 40×30", a).s, sigma);
      const w = withSingularValues(30, 40, sigma, normalRng(6));
      expectSpectrum("rank 8 of 30×40", checked("rank 8 of 30×40", w).s, sigma);
    });

    test("decomposes ill-conditioned matrices (condition 1e6)", () => {
      const sigma = logspaceDescending(1, 1e-6, 40);
      const a = withSingularValues(40, 40, sigma, normalRng(7));
      expectSpectrum("cond 1e6 40×40", checked("cond 1e6 40×40", a).s, sigma);
      const wideSigma = logspaceDescending(1e3, 1e-3, 20);
      const w = withSingularValues(20, 50, wideSigma, normalRng(8));
      expectSpectrum("cond 1e6 20×50", checked("cond 1e6 20×50", w).s, wideSigma);
    });

    test("handles repeated singular values and the zero matrix", () => {
      const ones = new Array<number>(30).fill(1);
      const q = withSingularValues(30, 30, ones, normalRng(9));
      expectSpectrum("orthogonal 30×30", checked("orthogonal 30×30", q).s, ones);
      const zero = { rows: 6, cols: 4, data: new Float32Array(24) };
      const res = checked("zero 6×4", zero);
      expect(Array.from(res.s)).toEqual([0, 0, 0, 0]);
    });

    test("returns complete square bases when full", () => {
      const sigma = [3, 2, 1, 0.5, 0.1];
      for (const [rows, cols] of [[30, 12], [12, 30], [9, 9]]) {
        const a = withSingularValues(rows, cols, sigma, normalRng(rows * 100 + cols));
        const res = checked(`full rank 5 of ${rows}×${cols}`, a, true);
        expectSpectrum(`full rank 5 of ${rows}×${cols}`, res.s, sigma);
      }
    });
  });
}

describe.skipIf(!HAS_LAPACK)(`svd, lapack and js agree${HAS_LAPACK ? "" : " (skipped: needs Debian liblapacke and libopenblas0)"}`, () => {
  test("on singular values of random, rank-deficient and ill-conditioned matrices", () => {
    const cases: Array<[string, Matrix]> = [
      ["random 33×21", randomMatrix(33, 21, normalRng(20))],
      ["rank 4 of 18×27", withSingularValues(18, 27, [4, 3, 2, 1], normalRng(21))],
      ["cond 1e6 24×24", withSingularValues(24, 24, logspaceDescending(1, 1e-6, 24), normalRng(22))],
    ];
    for (const [label, a] of cases) {
      const lapack = svd(copy(a), { backend: "lapack" }).s;
      const js = svd(copy(a), { backend: "js" }).s;
      let worst = 0;
      for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(lapack[i] - js[i]));
      worst /= js[0];
      console.log(`svd lapack vs js ${label}: max |Δs|/s₁ ${worst.toExponential(1)} (≤ 1e-5)`);
      expect(worst).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe("svd input checks", () => {
  test("rejects non-finite entries, wrong lengths and unknown backends", () => {
    const a = randomMatrix(3, 4, normalRng(30));
    a.data[6] = Number.NaN;
    expect(() => svd(a)).toThrow("svd: matrix has a non-finite entry NaN at (1, 2)");
    expect(() => svd({ rows: 3, cols: 4, data: new Float32Array(11) })).toThrow(
      "svd: matrix has shape 3×4 but 11 entries: expected 12",
    );
    expect(() => svd(randomMatrix(2, 2, normalRng(31)), { backend: "gpu" as "js" })).toThrow(
      'svd: unknown backend "gpu"',
    );
  });
});
