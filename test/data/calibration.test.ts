import { describe, expect, test } from "vitest";
import { calibrationFromTokens } from "../../src/data/calibration.ts";

describe("calibrationFromTokens", () => {
  test("takes evenly spaced, non-overlapping windows covering both ends of the stream", () => {
    const tokens = Array.from({ length: 100 }, (_, i) => i);
    const c = calibrationFromTokens(tokens, 3, 10);
    expect([c.sequences, c.length]).toEqual([3, 10]);
    // stride = floor((100 - 10) / 2) = 45: windows start at 0, 45, 90.
    expect(Array.from(c.ids.subarray(0, 3))).toEqual([0, 1, 2]);
    expect(c.ids[10]).toBe(45);
    expect(c.ids[29]).toBe(99);
  });

  test("refuses a stream shorter than the request, naming the source", () => {
    expect(() => calibrationFromTokens([1, 2, 3], 2, 2, "calib.txt")).toThrow(/calib\.txt holds 3 tokens/);
  });
});
