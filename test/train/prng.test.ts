import { describe, expect, it } from "vitest";
import { Prng } from "../../src/train/prng.ts";

/** mulberry32 as published (bryc/code, "PRNGs.md"), copied independently. */
function mulberry32(a: number) {
  return function () {
    let t = (a += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Prng", () => {
  it("reproduces the published mulberry32 sequence", () => {
    for (const seed of [0, 1, 42, 0xdeadbeef]) {
      const ref = mulberry32(seed);
      const p = new Prng(seed);
      for (let i = 0; i < 100; i++) expect(p.uniform()).toBe(ref());
    }
  });

  it("resumes from its state word", () => {
    const a = new Prng(7);
    for (let i = 0; i < 10; i++) a.normal();
    const b = new Prng(a.state);
    for (let i = 0; i < 10; i++) expect(b.normal()).toBe(a.normal());
  });

  it("draws standard normals (mean 0, variance 1, 2.5% beyond ±1.96 within sampling error)", () => {
    const p = new Prng(123);
    const n = 200_000;
    let sum = 0;
    let sq = 0;
    let tails = 0;
    for (let i = 0; i < n; i++) {
      const x = p.normal();
      sum += x;
      sq += x * x;
      if (x > 1.96) tails++;
    }
    expect(Math.abs(sum / n)).toBeLessThan(0.01); // sd of the mean: 0.0022
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.015); // sd of the variance: 0.0032
    expect(Math.abs(tails / n - 0.025)).toBeLessThan(0.002); // sd 0.00035
  });

  it("draws integers below n uniformly", () => {
    const p = new Prng(5);
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[p.below(7)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500); // sd ≈ 93
    expect(() => p.below(0)).toThrow("positive integer, got 0");
  });
});
