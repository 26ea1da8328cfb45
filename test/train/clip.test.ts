import { describe, expect, it } from "vitest";
import { clipGlobalNorm } from "../../src/train/clip.ts";

describe("clipGlobalNorm", () => {
  it("scales a gradient of norm 13 down to norm 1 and returns 13", () => {
    const g = new Float32Array([3, 4, 12]); // ‖g‖ = 13
    expect(clipGlobalNorm(g, 1)).toBe(13);
    const factor = 1 / (13 + 1e-6);
    expect(Array.from(g)).toEqual([3, 4, 12].map((x) => Math.fround(x * factor)));
  });

  it("leaves a gradient inside the ball untouched", () => {
    const g = new Float32Array([0.3, -0.4]);
    expect(clipGlobalNorm(g, 1)).toBeCloseTo(0.5, 7);
    expect(Array.from(g)).toEqual([Math.fround(0.3), Math.fround(-0.4)]);
  });

  it("rejects a non-positive limit", () => {
    expect(() => clipGlobalNorm(new Float32Array(1), 0)).toThrow("clipping norm must be positive, got 0");
  });
});
