// The report's comparisons and claims (src/report/compare.ts), worked by hand
// on two rows at ratio 0.5 (seeds 0, 1; tasks a, b) and one at ratio 0.3.
import { describe, expect, it } from "vitest";
import { aggregateRuns } from "../../src/report/aggregate.ts";
import { pickReferences } from "../../src/report/compare.ts";
import type { LoadedRun } from "../../src/report/load_runs.ts";
import type { RunResult, TaskResult } from "../../src/report/run_result.ts";

const T3 = 3.182446305284263; // t(0.975, 3)
const T1 = 12.706204736174705; // t(0.975, 1)

const task = (full_zs: number, emulator_zs: number, full_ft: number | null, emulator_ft: number, plug_in: number): TaskResult => ({
  n: 10, full_zs, emulator_zs, full_ft, emulator_ft, plug_in,
});

function run(label: string, method: string, ratio: number, seed: number, a: TaskResult, b: TaskResult): LoadedRun {
  const result: RunResult = {
    formatVersion: 1, model: "m", method, label, seed, settings: { ratio }, emulator_params: 5, middle_params: 10,
    metric: "acc", tasks: { a, b }, ppl: { full: 10, emulator: 20, plug_in: null },
  };
  return { path: `runs/${label}/seed-${seed}/result.json`, result };
}

// Plug-in differences layerdrop − gradot by (task, seed): a: 1, 2; b: 3, 6.
// Δ differences: a: 0, 1; b: 1, 4. Emulator ZS by task: a −3, b +1.
const RUNS: LoadedRun[] = [
  run("gradot-r0.5", "gradot", 0.5, 0, task(42, 40, 52, 50, 50), task(30, 30, 61, 55, 60)),
  run("gradot-r0.5", "gradot", 0.5, 1, task(42, 40, 52, 50, 50), task(30, 30, 61, 55, 60)),
  run("layerdrop-r0.5", "ot-layerdrop", 0.5, 0, task(42, 37, null, 51, 51), task(30, 31, null, 57, 63)),
  run("layerdrop-r0.5", "ot-layerdrop", 0.5, 1, task(42, 37, null, 51, 52), task(30, 31, null, 57, 66)),
  run("layerdrop-r0.3", "ot-layerdrop", 0.3, 5, task(42, 35, null, 50, 50), task(30, 29, null, 55, 55)),
];

describe("comparisons", () => {
  it("pair Plug-in and Δ by (task, seed) and Emulator ZS by task, row − reference, with t intervals", () => {
    const report = aggregateRuns(RUNS);
    // by default only layerdrop-r0.5 has a GradOT row at its ratio
    expect(report.comparisons.map((c) => [c.label, c.reference])).toEqual([["layerdrop-r0.5", "gradot-r0.5"]]);
    const [c] = report.comparisons;
    expect(c.seeds).toEqual([0, 1]);
    // d = 1, 2, 3, 6: mean 3, s² = 14/3
    expect(c.plug_in!.n).toBe(4);
    expect(c.plug_in!.mean).toBeCloseTo(3, 12);
    expect(c.plug_in!.hi! - 3).toBeCloseTo((T3 * Math.sqrt(14 / 3)) / 2, 9);
    expect(3 - c.plug_in!.lo!).toBeCloseTo((T3 * Math.sqrt(14 / 3)) / 2, 9);
    // d = 0, 1, 1, 4: mean 1.5, s² = 3
    expect(c.delta!.mean).toBeCloseTo(1.5, 12);
    expect(c.delta!.hi! - 1.5).toBeCloseTo((T3 * Math.sqrt(3)) / 2, 9);
    // d = −3, +1 (one per task): mean −1, s² = 8, df 1
    expect(c.emulator_zs.n).toBe(2);
    expect(c.emulator_zs.mean).toBeCloseTo(-1, 12);
    expect(c.emulator_zs.hi! + 1).toBeCloseTo((T1 * Math.sqrt(8)) / Math.SQRT2, 9);
  });

  it("take --baseline for every other row; rows sharing no seed get Emulator ZS only", () => {
    const report = aggregateRuns(RUNS, { baseline: "gradot-r0.5" });
    expect(report.comparisons.map((c) => c.label)).toEqual(["layerdrop-r0.3", "layerdrop-r0.5"]);
    const far = report.comparisons[0];
    expect([far.seeds, far.plug_in, far.delta]).toEqual([[], null, null]);
    expect(far.emulator_zs.mean).toBeCloseTo(((35 - 40) + (29 - 30)) / 2, 12);
    expect(() => aggregateRuns(RUNS, { baseline: "scaleot-r0.5" })).toThrow(
      `--baseline: no row is labelled "scaleot-r0.5" (rows: gradot-r0.5, layerdrop-r0.3, layerdrop-r0.5)`,
    );
  });

  it("default to the first GradOT row by label at the row's ratio, never the row itself", () => {
    const refs = pickReferences([
      { label: "gradot-b-r0.5", method: "gradot", ratio: 0.5 },
      { label: "gradot-a-r0.5", method: "gradot", ratio: 0.5 },
      { label: "crash-r0.5", method: "crash", ratio: 0.5 },
      { label: "crash", method: "crash", ratio: null },
    ]);
    expect([...refs]).toEqual([["gradot-b-r0.5", "gradot-a-r0.5"], ["crash-r0.5", "gradot-a-r0.5"]]);
  });
});

describe("claims", () => {
  it("pair Plug-in − Full FT by (task, seed) and Emulator ZS − Full ZS by task", () => {
    const [gradot, , layerdrop] = aggregateRuns(RUNS).rows;
    // plug-in − full FT: a −2, −2; b −1, −1: mean −1.5, s² = 1/3
    const ft = gradot.claims.plug_in_vs_full_ft!;
    expect([ft.n, ft.mean]).toEqual([4, -1.5]);
    expect(ft.hi! + 1.5).toBeCloseTo((T3 * Math.sqrt(1 / 3)) / 2, 9);
    // emulator − full ZS: a −2, b 0: mean −1, s² = 2, df 1
    const zs = gradot.claims.emulator_zs_vs_full_zs;
    expect([zs.n, zs.mean]).toEqual([2, -1]);
    expect(zs.lo!).toBeCloseTo(-1 - T1, 9);
    expect(layerdrop.claims.plug_in_vs_full_ft).toBeNull(); // no Full FT run
  });
});
