import { describe, expect, it } from "vitest";
import { compressDrd, selectDrdComponents } from "../../src/compress/drd.ts";
import { svd } from "../../src/linalg/svd.ts";
import { at, maxAbs, maxAbsDiff, multiply, normalRng, randomMatrix, zeros } from "../score/reference.ts";

describe("DRD component selection", () => {
  const k = 40; // ceil(5% of 40) = 2 protected components
  const s = Float32Array.from({ length: k }, (_, i) => k - i); // descending

  it("keeps the top 5% by singular value however low their scores", () => {
    const scores = Float32Array.from({ length: k }, (_, i) => i); // 0 and 1 score lowest
    const { kept } = selectDrdComponents(s, scores, 5);
    // Protected: 0, 1; then the three largest scores among the rest: 37, 38, 39.
    expect(Array.from(kept)).toEqual([0, 1, 37, 38, 39]);
  });

  it("fills the budget with the largest GCS among the rest, ties to the larger singular value", () => {
    const rng = normalRng(5);
    const scores = Float32Array.from({ length: k }, () => Math.round(rng() * 3));
    const rank = 12;
    const kept = new Set(selectDrdComponents(s, scores, rank).kept);
    expect(kept.size).toBe(rank);
    expect(kept.has(0) && kept.has(1)).toBe(true);
    // Every dropped unprotected component scores at most every kept unprotected one.
    const keptScores = [...kept].filter((i) => i > 1).map((i) => scores[i]);
    for (let i = 2; i < k; i++) {
      if (!kept.has(i)) {
        expect(scores[i]).toBeLessThanOrEqual(Math.min(...keptScores));
        const tiedKept = [...kept].filter((j) => j > 1 && scores[j] === scores[i]);
        for (const j of tiedKept) expect(s[j]).toBeGreaterThan(s[i]);
      }
    }
  });

  it("decides a GCS tie at the cut by singular value, not by position, and counts it", () => {
    const sv = Float32Array.from([10, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // 10 → 1 protected: index 0
    const scores = Float32Array.from([0, 5, 1, 1, 1, 1, 0, 0, 0, 0]);
    // Rank 4: 0 protected, 1 on score, then two of the four tied at 1 (indices 2-5): the largest s, 5 and 4.
    const { kept, tie } = selectDrdComponents(sv, scores, 4);
    expect(Array.from(kept)).toEqual([0, 1, 4, 5]);
    expect(tie).toEqual({ tied: 4, bySecondary: 2, byIndex: 0 });
    const untied = selectDrdComponents(sv, Float32Array.from([0, 5, 4, 3, 2, 1, 0, 0, 0, 0]), 4);
    expect(Array.from(untied.kept)).toEqual([0, 1, 2, 3]);
    expect(untied.tie).toEqual({ tied: 0, bySecondary: 0, byIndex: 0 });
  });

  it("with selection magnitude keeps the top singular values whatever the scores (truncated SVD)", () => {
    const sv = Float32Array.from([1, 5, 2, 9, 3, 4, 8, 6, 7, 0.5]);
    const scores = Float32Array.from([9, 8, 7, 0, 6, 5, 4, 3, 2, 1]);
    const { kept } = selectDrdComponents(sv, scores, 4, { selection: "magnitude" });
    expect(Array.from(kept)).toEqual([3, 6, 7, 8]); // s = 9, 8, 6, 7
    expect(Array.from(selectDrdComponents(sv, scores, 4).kept)).toEqual([0, 1, 2, 3]);
  });

  it("protects components by singular value, not by position", () => {
    const unsorted = Float32Array.from([1, 5, 2, 9, 3, 4, 8, 6, 7, 0.5]); // 10 → 1 protected: index 3
    const scores = Float32Array.from([9, 8, 7, 0, 6, 5, 4, 3, 2, 1]);
    expect(Array.from(selectDrdComponents(unsorted, scores, 3).kept)).toEqual([0, 1, 3]);
  });

  it("truncates the protected set when the rank is smaller", () => {
    const scores = Float32Array.from({ length: k }, (_, i) => i);
    expect(Array.from(selectDrdComponents(s, scores, 1).kept)).toEqual([0]);
    expect(() => selectDrdComponents(s, scores, 0)).toThrow("DRD rank must be an integer in [1, 40], got 0");
    expect(() => selectDrdComponents(s, scores.subarray(1), 3)).toThrow("40 singular values but 39 scores");
  });
});

describe("DRD compression", () => {
  const rng = normalRng(9);
  const inF = 12;
  const out = 8;
  const wk = randomMatrix(inF, out, rng); // kernel layout [in, out]
  const f = svd(wk);
  const scores = Float32Array.from({ length: f.s.length }, () => rng());

  it("reconstructs W exactly (dense) when every component is kept", () => {
    const result = compressDrd(f, scores, f.s.length);
    expect(result.kind).toBe("dense");
    if (result.kind !== "dense") return;
    expect([result.weight.rows, result.weight.cols]).toEqual([inF, out]);
    expect(maxAbsDiff(result.weight.data, wk.data)).toBeLessThan(1e-5 * maxAbs(wk.data));
  });

  it("stores U_r diag(s_r) [in, r] and Vt_r [r, out] whose product is the kept-component sum", () => {
    const rank = 3; // 3 · (12 + 8) = 60 < 96: low rank pays
    const result = compressDrd(f, scores, rank);
    expect(result.kind).toBe("lowRank");
    if (result.kind !== "lowRank") return;
    expect([result.weightU.rows, result.weightU.cols, result.weightV.rows, result.weightV.cols])
      .toEqual([inF, rank, rank, out]);
    const expected = zeros(inF, out);
    for (const i of result.kept) {
      for (let r = 0; r < inF; r++) {
        for (let c = 0; c < out; c++) expected.data[r * out + c] += f.s[i] * at(f.u, r, i) * at(f.vt, i, c);
      }
    }
    const product = multiply(result.weightU, result.weightV);
    expect(maxAbsDiff(product.data, expected.data)).toBeLessThan(1e-5 * maxAbs(expected.data));
    expect(result.kept[0]).toBe(0); // ceil(5% of 8) = 1 protected component
  });

  it("falls back to dense exactly when r (in + out) >= in · out", () => {
    const square = svd(randomMatrix(8, 8, rng));
    const sc = new Float32Array(8);
    expect(compressDrd(square, sc, 3).kind).toBe("lowRank"); // 48 < 64
    const atBreakEven = compressDrd(square, sc, 4); // 64 = 64
    expect(atBreakEven.kind).toBe("dense");
    if (atBreakEven.kind !== "dense") return;
    expect(atBreakEven.kept.length).toBe(4);
    expect([atBreakEven.weight.rows, atBreakEven.weight.cols]).toEqual([8, 8]);
  });
});
