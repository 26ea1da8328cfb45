import { describe, expect, it } from "vitest";
import { meanStd } from "../../src/eval/stats.ts";
import { ACCURACY_KEYS, aggregateRuns, type Report } from "../../src/report/aggregate.ts";
import type { LoadedRun } from "../../src/report/load_runs.ts";
import type { RunResult } from "../../src/report/run_result.ts";
import { fixtureResults, GRADOT } from "./fixture.ts";

const loaded = (results: RunResult[]): LoadedRun[] =>
  results.map((result) => ({ path: `runs/${result.label}/seed-${result.seed}/result.json`, result }));

const report = (): Report => aggregateRuns(loaded(fixtureResults()));

/** Expects `actual` to match the hand-computed [mean, std] pair to 1e-9. */
function expectPair(mean: number | null, std: number | null, [m, s]: readonly [number, number]) {
  expect(mean).not.toBeNull();
  expect(mean as number).toBeCloseTo(m, 9);
  expect(std).not.toBeNull();
  expect(std as number).toBeCloseTo(s, 9);
}

describe("meanStd", () => {
  it("gives the mean and the sample (n − 1) standard deviation", () => {
    const { mean, std } = meanStd([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(mean).toBe(5);
    expect(std).toBeCloseTo(Math.sqrt(32 / 7), 12); // Σ(x − 5)² = 32
  });
  it("has no spread for one value and refuses none", () => {
    expect(meanStd([3])).toEqual({ mean: 3, std: null });
    expect(() => meanStd([])).toThrow(/empty/);
  });
});

describe("aggregateRuns", () => {
  it("orders rows by label and tasks by name", () => {
    const r = report();
    expect(r.model).toBe("tiny-opt");
    expect(r.metric).toBe("acc_norm");
    expect(r.tasks).toEqual(["arc_easy", "piqa"]);
    expect(r.rows.map((row) => row.label)).toEqual(["gradot", "ot-layerdrop"]);
    expect(r.rows[0].seed_ids).toEqual([0, 1, 2]);
    expect(r.rows[0].seeds).toBe(3);
  });

  it("averages over tasks then seeds, with the seeds' sample spread (hand-computed)", () => {
    const row = report().rows[0];
    expectPair(row.plug_in, row.std.plug_in, GRADOT.plug_in);
    expectPair(row.emulator_ft, row.std.emulator_ft, GRADOT.emulator_ft);
    expectPair(row.emulator_zs, row.std.emulator_zs, GRADOT.emulator_zs);
    expectPair(row.full_zs, row.std.full_zs, GRADOT.full_zs);
    expectPair(row.delta, row.std.delta, GRADOT.delta);
  });

  it("takes Δ's spread from the per-seed differences, not from the two spreads", () => {
    const row = report().rows[0];
    const [, plugStd] = GRADOT.plug_in;
    const [, emuStd] = GRADOT.emulator_ft;
    // √(13/3) is none of the naive combinations of √7 and √(4/3)
    for (const naive of [plugStd + emuStd, Math.abs(plugStd - emuStd), Math.hypot(plugStd, emuStd)]) {
      expect(Math.abs((row.std.delta as number) - naive)).toBeGreaterThan(0.05);
    }
  });

  it("gives per-task means and spreads (hand-computed)", () => {
    const row = report().rows[0];
    const piqa = row.per_task.piqa;
    const arc = row.per_task.arc_easy;
    for (const key of ["plug_in", "emulator_ft", "delta", "full_ft", "emulator_zs"] as const) {
      expectPair(piqa[key], piqa.std[key], GRADOT.piqa[key]);
    }
    for (const key of ["plug_in", "emulator_ft", "delta"] as const) {
      expectPair(arc[key], arc.std[key], GRADOT.arc_easy[key]);
    }
    expect(piqa.n).toBe(100);
    expect(arc.n).toBe(40);
  });

  it("has Δ = Plug-in − Emulator FT in every cell", () => {
    for (const row of report().rows) {
      expect(row.delta).toBeCloseTo(row.plug_in - row.emulator_ft, 12);
      for (const cell of Object.values(row.per_task)) {
        expect(cell.delta).toBeCloseTo(cell.plug_in - cell.emulator_ft, 12);
      }
    }
  });

  it("reports Full FT only where every seed measured it", () => {
    const [gradot, layerdrop] = report().rows;
    expect(gradot.per_task.arc_easy.full_ft).toBeNull();
    expect(gradot.per_task.arc_easy.std.full_ft).toBeNull();
    expect(gradot.full_ft).toBeNull(); // one task lacks it
    expect(layerdrop.full_ft).toBe(75);
  });

  it("averages sizes and perplexities over seeds", () => {
    const [gradot, layerdrop] = report().rows;
    expectPair(gradot.emulator_params, gradot.std.emulator_params, GRADOT.emulator_params);
    expect(gradot.middle_params).toBe(200);
    expect(gradot.emulator_ratio).toBeCloseTo(55, 12);
    expectPair(gradot.ppl.full, gradot.std.ppl.full, GRADOT.ppl.full);
    expectPair(gradot.ppl.emulator, gradot.std.ppl.emulator, GRADOT.ppl.emulator);
    expectPair(gradot.ppl.plug_in, gradot.std.ppl.plug_in, GRADOT.ppl.plug_in);
    expect(layerdrop.ppl.plug_in).toBeNull();
    expect(layerdrop.emulator_ratio).toBe(50);
  });

  it("takes the ratio from settings.ratio, and the build seconds only when every seed has them", () => {
    const [gradot, layerdrop] = report().rows;
    expect(gradot.ratio).toBe(0.5);
    expect(layerdrop.ratio).toBeNull(); // its settings have no ratio
    expect(gradot.emulator_build_s).toBeNull(); // files without emulator_build_s
    const runs = loaded(fixtureResults());
    runs.forEach((run, i) => (run.result.emulator_build_s = 10 + i));
    const timed = aggregateRuns(runs).rows;
    // fixtureResults lists gradot seeds 2, 0, 1 (build 10, 11, 12 s), then ot-layerdrop (13 s)
    expect(timed[0].emulator_build_s).toBeCloseTo(11, 12);
    expect(timed[1].emulator_build_s).toBe(13);
    delete runs[1].result.emulator_build_s;
    expect(aggregateRuns(runs).rows[0].emulator_build_s).toBeNull();
  });

  it("has no spread for a single seed, and the seed's own values", () => {
    const row = report().rows[1];
    for (const key of ACCURACY_KEYS) expect(row.std[key]).toBeNull();
    expect([row.full_zs, row.emulator_zs, row.emulator_ft, row.plug_in, row.delta]).toEqual([52.5, 27.5, 48, 53, 5]);
  });

  it("keeps the settings and method of the row", () => {
    const row = report().rows[0];
    expect(row.method).toBe("gradot");
    expect(row.settings).toEqual({ ratio: 0.5, lambda: { attn: 1, mlp: 2 } });
  });

  const refusals: [string, (rs: RunResult[]) => void, RegExp][] = [
    ["two models", (rs) => (rs[3].model = "other"), /runs\/ot-layerdrop\/seed-7\/result.json": field "model" is "other" but .* has "tiny-opt": a report covers one model/],
    ["two metrics", (rs) => (rs[3].metric = "acc"), /field "metric" .* one accuracy metric/],
    ["different task sets", (rs) => delete (rs[3].tasks as Record<string, unknown>).piqa, /field "tasks" is \["arc_easy"\] .* same tasks/],
    ["settings that differ between seeds", (rs) => (rs[2].settings = { ratio: 0.4, lambda: { attn: 1, mlp: 2 } }), /seed-1\/result.json": field "settings" .* share their settings/],
    ["methods that differ between seeds", (rs) => (rs[0].method = "scaleot"), /field "method"/],
    ["middle sizes that differ between seeds", (rs) => (rs[2].middle_params = 300), /field "middle_params"/],
    ["example counts that differ between seeds", (rs) => (rs[2].tasks.piqa.n = 99), /field "tasks.piqa.n"/],
    ["a repeated label and seed", (rs) => rs.push(structuredClone(rs[1])), /field "seed" repeats label "gradot" seed 0/],
  ];
  for (const [what, edit, message] of refusals) {
    it(`refuses ${what}, naming the files`, () => {
      const results = fixtureResults();
      edit(results);
      expect(() => aggregateRuns(loaded(results))).toThrow(message);
    });
  }

  it("refuses no runs", () => {
    expect(() => aggregateRuns([])).toThrow(/no runs/);
  });
});

describe("aggregateRuns: chance per task", () => {
  /** The fixture with chance 50% on piqa and 25% on arc_easy, except `missing` runs on arc_easy. */
  const withChance = (missing: number[] = []): RunResult[] =>
    fixtureResults().map((r, i) => ({
      ...r,
      tasks: {
        piqa: { ...r.tasks.piqa, chance: 50 },
        arc_easy: missing.includes(i) ? r.tasks.arc_easy : { ...r.tasks.arc_easy, chance: 25 },
      },
    }));

  it("gives each task's chance when every run has it", () => {
    expect(aggregateRuns(loaded(withChance())).chance).toEqual({ arc_easy: 25, piqa: 50 });
  });

  it("gives null for a task some run lacks it for, and null everywhere for old files", () => {
    expect(aggregateRuns(loaded(withChance([2]))).chance).toEqual({ arc_easy: null, piqa: 50 });
    expect(report().chance).toEqual({ arc_easy: null, piqa: null });
  });
});
