// Linear CKA (src/stats/cka.ts, docs/METHOD.md §3 "CRaSh") against an
// independent computation: Kornblith et al.'s token-side (Gram) form
// HSIC(K, L) = tr(K H L H) with K = X Xᵀ, L = Y Yᵀ and H = I − 11ᵀ/n, in
// float64, which never forms the feature-side product the code uses.
import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { type ChunkedRows, ckaMatrix, linearCka } from "../../src/stats/cka.ts";
import { normalRng, randomMatrix, randomOrthonormal } from "../linalg/reference.ts";

/** CKA by centred Gram matrices, float64, O(n²) (the reference). */
function gramCka(x: Matrix, y: Matrix): number {
  const n = x.rows;
  const centredGram = (m: Matrix) => {
    const k = new Float64Array(n * n); // [n, n]
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < m.cols; c++) s += m.data[i * m.cols + c] * m.data[j * m.cols + c];
        k[i * n + j] = s;
      }
    }
    const rowMean = new Float64Array(n);
    let all = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) rowMean[i] += k[i * n + j] / n;
      all += rowMean[i] / n;
    }
    return k.map((v, ij) => v - rowMean[Math.floor(ij / n)] - rowMean[ij % n] + all); // H K H
  };
  const kc = centredGram(x);
  const lc = centredGram(y);
  const hsic = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0); // tr(A B), both symmetric
  return hsic(kc, lc) / Math.sqrt(hsic(kc, kc) * hsic(lc, lc));
}

const scaled = (m: Matrix, s: number): Matrix => ({ ...m, data: m.data.map((v) => v * s) });

/** `m` `[n, d]` times an orthogonal `[d, d]`. */
function rotated(m: Matrix, rng: () => number): Matrix {
  const q = randomOrthonormal(m.cols, m.cols, rng); // [d, d]
  const out = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      let s = 0;
      for (let k = 0; k < m.cols; k++) s += m.data[r * m.cols + k] * q[k * m.cols + c];
      out[r * m.cols + c] = s;
    }
  }
  return { ...m, data: out };
}

/** `m` cut into row chunks of `size` (the last shorter). */
function chunked(m: Matrix, size: number): ChunkedRows {
  const chunks = Math.ceil(m.rows / size);
  return {
    width: m.cols,
    chunks,
    read: (k) => {
      const rows = Math.min(size, m.rows - k * size);
      return { rows, cols: m.cols, data: m.data.slice(k * size * m.cols, (k * size + rows) * m.cols) };
    },
  };
}

describe("linearCka", () => {
  it("is 48/49 for the hand-checked 1-d case x = (1, 2, 3), y = (1, 4, 9): the squared correlation", () => {
    // centred x = (−1, 0, 1), y = (−11, −2, 13)/3: x·y = 8, |x|² = 2, |y|² = 294/9 → 64 / (2 · 294/9) = 48/49
    const x = { rows: 3, cols: 1, data: Float32Array.of(1, 2, 3) };
    const y = { rows: 3, cols: 1, data: Float32Array.of(1, 4, 9) };
    expect(linearCka(x, y)).toBeCloseTo(48 / 49, 6);
  });

  it("is 1 for identical representations and 0 for centred representations with orthogonal columns", () => {
    const x = randomMatrix(50, 6, normalRng(1));
    expect(linearCka(x, x)).toBeCloseTo(1, 6);
    const a = { rows: 4, cols: 1, data: Float32Array.of(1, -1, 0, 0) };
    const b = { rows: 4, cols: 1, data: Float32Array.of(0, 0, 1, -1) };
    expect(linearCka(a, b)).toBe(0);
  });

  it("is near 0 for independent random representations (many tokens, few features)", () => {
    const rng = normalRng(2);
    const x = randomMatrix(4000, 4, rng);
    const y = randomMatrix(4000, 4, rng);
    expect(linearCka(x, y)).toBeLessThan(0.01); // E ≈ p·q/n ≈ 0.004
  });

  it("agrees with the Gram-matrix reference on random, offset representations of different widths", () => {
    const rng = normalRng(3);
    const x = randomMatrix(60, 5, rng);
    const base = randomMatrix(60, 7, rng);
    // y partly depends on x, with large column offsets that centring must remove
    const y = { ...base, data: base.data.map((v, i) => v + 2 * x.data[Math.floor(i / 7) * 5 + (i % 5)] + 30 * (i % 7)) };
    const expected = gramCka(x, y);
    const diff = Math.abs(linearCka(x, y) - expected);
    console.log(`CKA vs Gram reference: ${expected.toFixed(6)}, |diff| ${diff.toExponential(2)} (allowed 1e-5)`);
    expect(diff).toBeLessThan(1e-5);
  });

  it("is invariant to isotropic scaling and orthogonal rotation of either side, not to an anisotropic scaling", () => {
    const rng = normalRng(4);
    const x = randomMatrix(80, 6, rng);
    const noise = randomMatrix(80, 6, rng);
    const y = { ...x, data: x.data.map((v, i) => v + 0.7 * noise.data[i]) };
    const reference = linearCka(x, y);
    expect(linearCka(scaled(x, 37), y)).toBeCloseTo(reference, 5);
    expect(linearCka(x, rotated(y, rng))).toBeCloseTo(reference, 5);
    expect(linearCka(rotated(scaled(x, 0.01), rng), rotated(y, rng))).toBeCloseTo(reference, 5);
    const stretched = { ...x, data: x.data.map((v, i) => (i % 6 === 0 ? 50 * v : v)) };
    expect(Math.abs(linearCka(stretched, y) - reference)).toBeGreaterThan(0.05);
  });

  it("refuses representations of different token counts", () => {
    const rng = normalRng(5);
    expect(() => linearCka(randomMatrix(5, 2, rng), randomMatrix(6, 2, rng))).toThrow("x has 5 rows (tokens) but y has 6");
  });
});

describe("ckaMatrix", () => {
  it("streamed in uneven chunks equals the pairwise Gram reference, symmetric with unit diagonal", () => {
    const rng = normalRng(6);
    const reps = [randomMatrix(45, 4, rng), randomMatrix(45, 4, rng), randomMatrix(45, 4, rng)];
    reps[2] = { ...reps[2], data: reps[2].data.map((v, i) => v + 3 * reps[0].data[i]) }; // 2 resembles 0
    const rows: number[] = [];
    const m = ckaMatrix(reps.map((r) => chunked(r, 16)), (i) => rows.push(i)); // chunks of 16, 16, 13 rows
    expect(rows).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      expect(m[i * 3 + i]).toBeCloseTo(1, 6);
      for (let j = 0; j < 3; j++) {
        expect(m[i * 3 + j]).toBe(m[j * 3 + i]);
        expect(m[i * 3 + j]).toBeCloseTo(gramCka(reps[i], reps[j]), 5);
      }
    }
    expect(m[2]).toBeGreaterThan(m[1]);
  });

  it("gives a constant representation CKA 0 with everything", () => {
    const rng = normalRng(7);
    const constant = { rows: 10, cols: 3, data: new Float32Array(30).fill(2) };
    const m = ckaMatrix([chunked(randomMatrix(10, 3, rng), 4), chunked(constant, 4)]);
    expect([m[1], m[2], m[3]]).toEqual([0, 0, 0]);
  });
});
