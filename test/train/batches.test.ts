import { describe, expect, it } from "vitest";
import { sliceBatch, validationWindows, WindowSampler } from "../../src/train/batches.ts";

const stream = Uint16Array.from({ length: 1000 }, (_, i) => i); // token i at position i

describe("WindowSampler", () => {
  it("cuts contiguous windows of the stream, covering every start position", () => {
    const sampler = new WindowSampler(stream, 4, 16, 1);
    const starts = new Set<number>();
    for (let s = 0; s < 500; s++) {
      const { ids, batch, ctx } = sampler.next();
      expect([batch, ctx, ids.length]).toEqual([4, 16, 64]);
      for (let b = 0; b < 4; b++) {
        const row = ids.subarray(b * 16, b * 16 + 16);
        for (let t = 1; t < 16; t++) expect(row[t]).toBe(row[0] + t);
        expect(row[15]).toBeLessThan(1000);
        starts.add(row[0]);
      }
    }
    expect(starts.size).toBeGreaterThan(800); // 2000 draws over 985 starts: ≈ 865 expected
    expect(starts.has(0) || starts.has(984)).toBe(true);
  });

  it("is reproducible from the seed and resumable from its state", () => {
    const a = new WindowSampler(stream, 3, 8, 99);
    const b = new WindowSampler(stream, 3, 8, 99);
    expect(Array.from(a.next().ids)).toEqual(Array.from(b.next().ids));
    const c = new WindowSampler(stream, 3, 8, a.state);
    expect(Array.from(c.next().ids)).toEqual(Array.from(a.next().ids));
    expect(Array.from(new WindowSampler(stream, 3, 8, 100).next().ids)).not.toEqual(Array.from(b.next().ids));
  });

  it("rejects a stream shorter than one window", () => {
    expect(() => new WindowSampler(stream.subarray(0, 5), 1, 8, 0)).toThrow(
      "training token stream holds 5 tokens, fewer than one window of 8",
    );
  });
});

describe("validationWindows", () => {
  it("takes evenly spaced, non-overlapping windows", () => {
    const v = validationWindows(stream, 10, 4); // 100 windows fit: stride 25 windows
    expect(v.batch).toBe(4);
    expect([0, 1, 2, 3].map((b) => v.ids[b * 10])).toEqual([0, 250, 500, 750]);
  });

  it("caps the count at the windows that fit", () => {
    const v = validationWindows(stream.subarray(0, 35), 10, 8);
    expect(v.batch).toBe(3);
    expect(Array.from(v.ids)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it("slices rows into micro-batches", () => {
    const v = validationWindows(stream, 10, 4);
    const part = sliceBatch(v, 1, 3);
    expect([part.batch, part.ids[0], part.ids[19]]).toEqual([2, 250, 509]);
  });
});
