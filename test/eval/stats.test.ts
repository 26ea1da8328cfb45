/**
 * Accuracy intervals and chance levels against values computed outside this
 * code: scipy's `binomtest(x, n).proportion_ci(method="wilson")` and numpy's
 * `std(ddof=1)/sqrt(n)` (lm-eval's stderr).
 */
import { describe, expect, it } from "vitest";
import {
  aboveChance,
  accuracyStats,
  averageStats,
  chanceLevel,
  pairedTInterval,
  studentTCdf,
  studentTQuantile,
  wilsonInterval,
  Z95,
} from "../../src/eval/stats.ts";

const outcomes = (hits: number, n: number) => Array.from({ length: n }, (_, i) => (i < hits ? 1 : 0));

describe("wilsonInterval", () => {
  // scipy 1.x: binomtest(x, n).proportion_ci(method="wilson")
  const cases: Array<[number, number, number, number]> = [
    [3, 10, 0.10779126740630102, 0.6032218525388546],
    [0, 10, 0, 0.27753279986288926],
    [50, 100, 0.4038315303659956, 0.5961684696340044],
    [167, 500, 0.2940638124558771, 0.37646746857735824],
  ];
  for (const [x, n, lo, hi] of cases) {
    it(`${x}/${n} gives scipy's [${lo.toFixed(4)}, ${hi.toFixed(4)}]`, () => {
      const [a, b] = wilsonInterval(x, n);
      expect(a).toBeCloseTo(lo, 10);
      expect(b).toBeCloseTo(hi, 10);
    });
  }

  it("uses the two-sided 95% normal quantile and refuses impossible counts", () => {
    expect(Z95).toBeCloseTo(1.959963984540054, 14);
    expect(() => wilsonInterval(1, 0)).toThrow("needs n ≥ 1 trials");
    expect(() => wilsonInterval(11, 10)).toThrow("Successes 11 lie outside [0, 10]");
  });
});

describe("accuracyStats", () => {
  it("reports lm-eval's stderr (sample sd / √n) and the Wilson interval", () => {
    const small = accuracyStats([1, 0, 1, 1]);
    expect(small.mean).toBe(0.75);
    expect(small.stderr).toBeCloseTo(0.25, 14); // sd with n-1 = 0.5, / √4
    const big = accuracyStats(outcomes(167, 500));
    expect(big.mean).toBeCloseTo(0.334, 14);
    expect(big.stderr).toBeCloseTo(0.02111349234774381, 14); // numpy
    expect(big.ci).toEqual(wilsonInterval(167, 500));
    expect(Number.isNaN(accuracyStats([1]).stderr)).toBe(true);
  });

  it("refuses no items and outcomes other than 0/1", () => {
    expect(() => accuracyStats([])).toThrow("no items");
    expect(() => accuracyStats([1, 0.5])).toThrow("Outcome 1 is 0.5, expected 0 or 1");
  });
});

describe("chance and averages", () => {
  it("chance is the mean of 1/k", () => {
    expect(chanceLevel([4, 4, 4])).toBeCloseTo(0.25, 15);
    expect(chanceLevel([2, 4, 4])).toBeCloseTo(1 / 3, 15);
    expect(() => chanceLevel([4, 1])).toThrow("Item 1 has 1 choices");
    expect(() => chanceLevel([])).toThrow("no items");
  });

  it("above chance means the lower end of the interval is above it", () => {
    const s = accuracyStats(outcomes(167, 500)); // [0.294, 0.376]
    expect(aboveChance(s, 0.25)).toBe(true);
    expect(aboveChance(s, 0.3)).toBe(false);
  });

  it("averages tasks with equal weight and se = √Σse² / K", () => {
    const tasks = [
      { mean: 0.3, stderr: 0.02, ci: [0, 1] as [number, number] },
      { mean: 0.5, stderr: 0.03, ci: [0, 1] as [number, number] },
      { mean: 0.4, stderr: 0.05, ci: [0, 1] as [number, number] },
    ];
    const avg = averageStats(tasks);
    expect(avg.mean).toBeCloseTo(0.4, 15);
    expect(avg.stderr).toBeCloseTo(0.020548046676563253, 15); // numpy
    expect(avg.ci[0]).toBeCloseTo(0.4 - 1.959963984540054 * 0.020548046676563253, 12);
    expect(avg.ci[1]).toBeCloseTo(0.4 + 1.959963984540054 * 0.020548046676563253, 12);
    expect(() => averageStats([])).toThrow("no tasks");
  });
});

describe("Student t", () => {
  it("gives the tables' 97.5% quantiles, tending to the normal's", () => {
    // R: qt(0.975, c(1, 2, 3, 7, 23))
    const table: Array<[number, number]> = [
      [1, 12.706204736174705], [2, 4.302652729749464], [3, 3.182446305284263], [7, 2.364624251592785], [23, 2.068657610419041],
    ];
    for (const [df, q] of table) expect(studentTQuantile(0.975, df)).toBeCloseTo(q, 9);
    expect(studentTQuantile(0.975, 1e7)).toBeCloseTo(Z95, 5);
    expect(studentTQuantile(0.025, 3)).toBeCloseTo(-3.182446305284263, 9);
    expect(studentTCdf(0, 5)).toBeCloseTo(0.5, 12);
    // df 1 is Cauchy: P(T ≤ 1) = 3/4
    expect(studentTCdf(1, 1)).toBeCloseTo(0.75, 12);
    expect(() => studentTQuantile(1, 3)).toThrow(/p in \(0, 1\)/);
  });

  it("pairs differences into d̄ ± t·s/√n, worked by hand", () => {
    // d = 1, 2, 3, 6: mean 3, s² = (4 + 1 + 0 + 9)/3 = 14/3, t(0.975, 3) = 3.1824463
    const half = (3.182446305284263 * Math.sqrt(14 / 3)) / 2; // 3.4374
    const interval = pairedTInterval([1, 2, 3, 6]);
    expect(interval.n).toBe(4);
    expect(interval.mean).toBe(3);
    expect(interval.lo).toBeCloseTo(3 - half, 9);
    expect(interval.hi).toBeCloseTo(3 + half, 9);
    expect(interval.lo).toBeCloseTo(-0.4374, 4);
    // one difference has no spread, hence no interval; equal ones a zero-width one
    expect(pairedTInterval([2.5])).toEqual({ mean: 2.5, lo: null, hi: null, n: 1 });
    expect(pairedTInterval([2, 2, 2])).toEqual({ mean: 2, lo: 2, hi: 2, n: 3 });
    expect(() => pairedTInterval([])).toThrow(/at least one/);
  });
});
