import { describe, expect, it } from "vitest";
import {
  gramAccumulateUpper,
  gramColumnsAccumulate,
  gramTransposed,
  matmul,
  matmulAccumulate,
  symmetrizeUpper,
} from "../../src/linalg/gemm.ts";
import { checkFinite, type Matrix } from "../../src/linalg/matrix.ts";
import { maxAbs, maxAbsDiff, normalRng, randomMatrix } from "../score/reference.ts";

const copy = (m: Matrix): Matrix => ({ ...m, data: m.data.slice() });

describe("in-place accumulating products (the BLAS path, or the JS one under OFFTUNE_LINALG=js)", () => {
  const rng = normalRng(11);
  const x = randomMatrix(29, 13, rng);
  const y = randomMatrix(29, 13, rng);

  it("gramAccumulateUpper + symmetrizeUpper add xᵀx to what is there", () => {
    const start = gramTransposed(y);
    const c = copy(start);
    gramAccumulateUpper(c, x);
    symmetrizeUpper(c);
    const ref = gramTransposed(x).data.map((v, k) => v + start.data[k]);
    expect(maxAbsDiff(c.data, ref)).toBeLessThan(1e-5 * maxAbs(ref));
    expect(() => gramAccumulateUpper({ rows: 12, cols: 12, data: new Float32Array(144) }, x)).toThrow("expected 13×13");
    // With a divisor: the upper triangle divided (exactly, not times 1/n), mirrored below, stale lower ignored.
    const sum = copy(start);
    for (let i = 1; i < 13; i++) for (let j = 0; j < i; j++) sum.data[i * 13 + j] = NaN;
    symmetrizeUpper(sum, 7);
    expect(sum.data).toEqual(start.data.map((_, k) => {
      const [i, j] = [Math.floor(k / 13), k % 13];
      return Math.fround(start.data[Math.min(i, j) * 13 + Math.max(i, j)] / 7);
    }));
  });

  it("symmetrizeUpper mirrors across its copy tiles (sides not a multiple of the tile)", () => {
    for (const n of [64, 65, 130, 200]) {
      const sum = randomMatrix(n, n, rng);
      const upper = sum.data.slice();
      for (let i = 1; i < n; i++) for (let j = 0; j < i; j++) sum.data[i * n + j] = NaN; // stale lower triangle
      symmetrizeUpper(sum, 3);
      expect(sum.data).toEqual(upper.map((_, k) => {
        const [i, j] = [Math.floor(k / n), k % n];
        return Math.fround(upper[Math.min(i, j) * n + Math.max(i, j)] / 3);
      }));
    }
  });

  it("checkFinite(upper) reads the upper triangle and names the whole matrix's first non-finite entry", () => {
    const m = gramTransposed(x); // 13×13, symmetric
    m.data[3 * 13 + 1] = m.data[1 * 13 + 3] = Infinity;
    expect(() => checkFinite(m, "m")).toThrow("m has a non-finite entry Infinity at (1, 3)");
    expect(() => checkFinite(m, "m", true)).toThrow("m has a non-finite entry Infinity at (1, 3)");
    const staleLower = gramTransposed(x);
    staleLower.data[5 * 13 + 2] = NaN;
    expect(() => checkFinite(staleLower, "m")).toThrow("at (5, 2)");
    expect(() => checkFinite(staleLower, "m", true)).not.toThrow();
    expect(() => checkFinite(randomMatrix(3, 4, rng), "m", true)).toThrow("only a square matrix");
  });

  it("matmulAccumulate adds op(a) op(b) for every transpose combination", () => {
    const a = randomMatrix(7, 5, rng);
    const b = randomMatrix(5, 6, rng);
    const cases: Array<[Matrix, Matrix, boolean, boolean]> = [
      [a, b, false, false],
      [transposed(a), b, true, false],
      [a, transposed(b), false, true],
    ];
    for (const [p, q, ta, tb] of cases) {
      const c = randomMatrix(7, 6, rng);
      const before = c.data.slice();
      matmulAccumulate(c, p, q, ta, tb);
      const ref = matmul(a, b).data.map((v, k) => v + before[k]);
      expect(maxAbsDiff(c.data, ref)).toBeLessThan(1e-5 * maxAbs(ref));
    }
    expect(() => matmulAccumulate(randomMatrix(6, 6, rng), a, b)).toThrow("matmulAccumulate: c is 6×6");
  });

  it("gramColumnsAccumulate gives column blocks of xᵀx", () => {
    const full = gramTransposed(x);
    for (const [from, to] of [[0, 13], [3, 8], [12, 13]]) {
      const w = to - from;
      const c: Matrix = { rows: 13, cols: w, data: new Float32Array(13 * w) };
      gramColumnsAccumulate(c, x, from, to);
      gramColumnsAccumulate(c, x, from, to); // accumulates: twice the block
      const ref = new Float32Array(13 * w);
      for (let i = 0; i < 13; i++) for (let j = 0; j < w; j++) ref[i * w + j] = 2 * full.data[i * 13 + from + j];
      expect(maxAbsDiff(c.data, ref)).toBeLessThan(1e-5 * maxAbs(ref));
    }
    expect(() => gramColumnsAccumulate({ rows: 13, cols: 2, data: new Float32Array(26) }, x, 12, 14)).toThrow("column range");
  });
});

function transposed(m: Matrix): Matrix {
  const data = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) data[c * m.rows + r] = m.data[r * m.cols + c];
  return { rows: m.cols, cols: m.rows, data };
}
