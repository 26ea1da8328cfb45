import { describe, expect, it } from "vitest";
import { gramTransposed } from "../../src/linalg/gemm.ts";
import { columnAbsSums, type Matrix, rowAbsSums } from "../../src/linalg/matrix.ts";
import { columnsFactor, denseFactor, heldFactor, rowFactor, upperColumnAbsSums } from "../../src/stats/symmetric_factor.ts";
import { maxAbs, maxAbsDiff, normalRng, randomMatrix } from "../score/reference.ts";

describe("row-held symmetric factors", () => {
  const rng = normalRng(5);
  const chunks = [randomMatrix(9, 23, rng), randomMatrix(4, 23, rng)];
  const dense = gramTransposed(chunks[0]);
  const second = gramTransposed(chunks[1]);
  for (let k = 0; k < dense.data.length; k++) dense.data[k] = 0.25 * (dense.data[k] + second.data[k]);

  for (const block of [1, 5, 7, 23, 512]) {
    it(`equal the dense factor and its column L1 norms (column blocks of ${block})`, () => {
      const f = rowFactor(chunks, 0.25, block);
      expect(f.size).toBe(23);
      expect(maxAbsDiff(f.dense().data, dense.data)).toBeLessThan(1e-5 * maxAbs(dense.data));
      const sums = columnAbsSums(dense);
      expect(maxAbsDiff(f.columnAbsSums(), sums)).toBeLessThan(1e-5 * maxAbs(sums));
      expect(maxAbsDiff(denseFactor(dense).columnAbsSums(), sums)).toBe(0);
    });
  }

  it("a dense factor's column sums are its row sums, bit for bit, because it is symmetric", () => {
    const big = gramTransposed(randomMatrix(40, 300, rng)); // [300, 300], exactly symmetric
    expect(rowAbsSums(big)).toEqual(columnAbsSums(big));
    const lopsided: Matrix = { rows: 2, cols: 3, data: Float32Array.of(1, -2, 3, -4, 5, 0.5) };
    expect(Array.from(rowAbsSums(lopsided))).toEqual([6, 9.5]);
  });

  it("refuse chunks of different widths and a non-square dense matrix", () => {
    expect(() => rowFactor([randomMatrix(2, 3, rng), randomMatrix(2, 4, rng)], 1)).toThrow("differ in width");
    expect(() => rowFactor([], 1)).toThrow("at least one chunk");
    expect(() => denseFactor(randomMatrix(2, 3, rng))).toThrow("square");
  });
});

describe("upperColumnAbsSums", () => {
  it("gives a symmetric matrix's scaled column L1 norms from its upper triangle alone", () => {
    const n = 7;
    const full = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) full[i * n + j] = full[j * n + i] = Math.sin(3 * i + j) * (i === j ? 2 : -1);
    const upper = full.slice();
    for (let i = 1; i < n; i++) for (let j = 0; j < i; j++) upper[i * n + j] = NaN; // stale lower triangle: never read
    const sums = upperColumnAbsSums({ rows: n, cols: n, data: upper }, 0.25);
    for (let j = 0; j < n; j++) {
      let want = 0;
      for (let i = 0; i < n; i++) want += Math.abs(full[i * n + j]);
      expect(sums[j]).toBeCloseTo(0.25 * want, 12);
    }
    const held = columnsFactor(sums);
    expect(Array.from(held.columnAbsSums())).toEqual(Array.from(sums));
    expect(heldFactor(held.held).columnAbsSums()).toEqual(sums);
  });
});
