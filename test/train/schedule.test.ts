import { describe, expect, it } from "vitest";
import { learningRate, validateSchedule } from "../../src/train/schedule.ts";

const o = { peak: 6e-4, floor: 6e-5, warmup: 10, total: 110 };

describe("learningRate", () => {
  it("ramps linearly during warmup: η·(s+1)/W", () => {
    expect(learningRate(0, o)).toBeCloseTo(6e-5, 15);
    expect(learningRate(4, o)).toBeCloseTo(3e-4, 15);
    expect(learningRate(9, o)).toBeCloseTo(6e-4, 15);
  });

  it("follows the half cosine from the peak to the floor", () => {
    expect(learningRate(10, o)).toBeCloseTo(6e-4, 15); // cos 0
    expect(learningRate(60, o)).toBeCloseTo((6e-4 + 6e-5) / 2, 15); // cos π/2
    expect(learningRate(35, o)).toBeCloseTo(6e-5 + 5.4e-4 * 0.5 * (1 + Math.SQRT1_2), 15); // cos π/4
    expect(learningRate(109, o)).toBeCloseTo(6e-5 + 5.4e-4 * 0.5 * (1 + Math.cos(Math.PI * 0.99)), 15);
    expect(learningRate(110, o)).toBe(6e-5);
    expect(learningRate(500, o)).toBe(6e-5);
  });

  it("never increases after warmup", () => {
    for (let s = 10; s < 120; s++) expect(learningRate(s + 1, o)).toBeLessThanOrEqual(learningRate(s, o));
  });

  it("starts at the peak without warmup", () => {
    expect(learningRate(0, { ...o, warmup: 0 })).toBe(6e-4);
  });

  it("rejects a floor above the peak and non-integer steps", () => {
    expect(() => validateSchedule({ ...o, floor: 1e-3 })).toThrow("floor must lie in [0, 0.0006], got 0.001");
    expect(() => validateSchedule({ ...o, warmup: 2.5 })).toThrow("Warmup must be a non-negative integer, got 2.5");
    expect(() => validateSchedule({ ...o, total: 0 })).toThrow("Total steps must be a positive integer, got 0");
  });
});
