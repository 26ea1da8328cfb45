// The shared top-k selection of DRD and SCP (src/compress/select.ts,
// docs/METHOD.md §2 "Ties at the cut"): order, tie-breaks and tie counts.
import { describe, expect, it } from "vitest";
import { selectTop } from "../../src/compress/select.ts";
import { normalRng } from "../score/reference.ts";

describe("selectTop", () => {
  it("decides a tie at the cut by the secondary key and counts it", () => {
    // Channel 0 wins on score; 1, 2, 3 tie at 1 for the two places left: secondary 5 (2) and 2 (3) win.
    const { kept, tie } = selectTop([3, 1, 1, 1, 0], [0, 1, 5, 2, 9], 3, "SCP channel");
    expect(Array.from(kept)).toEqual([0, 2, 3]);
    expect(tie).toEqual({ tied: 3, bySecondary: 2, byIndex: 0 });
  });

  it("falls back to the lower index when the secondary key ties too, and counts those", () => {
    const { kept, tie } = selectTop([1, 1, 1, 1, 1], [2, 0, 2, 2, 1], 2, "SCP channel");
    // Secondary 2 for 0, 2, 3: the two lowest indices win.
    expect(Array.from(kept)).toEqual([0, 2]);
    expect(tie).toEqual({ tied: 5, bySecondary: 2, byIndex: 2 });
  });

  it("counts no tie when the cut falls between distinct scores, even with ties elsewhere", () => {
    const { kept, tie } = selectTop([2, 2, 1, 1], [0, 1, 0, 1], 2, "SCP channel");
    expect(Array.from(kept)).toEqual([0, 1]);
    expect(tie).toEqual({ tied: 0, bySecondary: 0, byIndex: 0 });
  });

  it("without ties keeps the top scores whatever the secondary key", () => {
    const rng = normalRng(3);
    const primary = Float64Array.from({ length: 60 }, () => rng());
    const top = Array.from(primary.keys()).sort((a, b) => primary[b] - primary[a]).slice(0, 17).sort((a, b) => a - b);
    for (const seed of [4, 5]) {
      const r = normalRng(seed);
      const secondary = Float64Array.from({ length: 60 }, () => r());
      const { kept, tie } = selectTop(primary, secondary, 17, "DRD component");
      expect(Array.from(kept)).toEqual(top);
      expect(tie).toEqual({ tied: 0, bySecondary: 0, byIndex: 0 });
    }
  });

  it("chooses among the candidates only, and counts ties among them", () => {
    // Candidate 0 scores highest but is not offered; 2 and 3 tie (4 is not a candidate).
    const { kept, tie } = selectTop([9, 5, 1, 1, 1], [0, 0, 1, 3, 7], 2, "DRD component", [1, 2, 3]);
    expect(Array.from(kept)).toEqual([1, 3]);
    expect(tie).toEqual({ tied: 2, bySecondary: 1, byIndex: 0 });
  });

  it("rejects counts out of range, mismatched lengths and NaN", () => {
    expect(() => selectTop([1, 2], [1, 2], 3, "SCP channel")).toThrow("SCP channel: cannot keep 3 of 2 candidates");
    expect(() => selectTop([1, 2], [1], 1, "SCP channel")).toThrow("SCP channel: 2 scores but 1 secondary keys");
    expect(() => selectTop([1, NaN], [1, 2], 1, "SCP channel")).toThrow("SCP channel 1 has a NaN score");
    expect(() => selectTop([1, 2], [NaN, 2], 1, "SCP channel")).toThrow("SCP channel 0 has a NaN secondary key");
  });
});
