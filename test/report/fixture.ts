/**
 * A hand-made set of run results for the report tests, and the means and
 * spreads worked out by hand from it (not by the code under test).
 *
 * Rows: "gradot" (seeds 0, 1, 2) and "ot-layerdrop" (seed 7 only); tasks
 * "piqa" and "arc_easy" (reported sorted: arc_easy, piqa).
 */
import type { RunResult, TaskResult } from "../../src/report/run_result.ts";

const task = (n: number, full_zs: number, emulator_zs: number, full_ft: number | null, emulator_ft: number, plug_in: number): TaskResult => ({
  n, full_zs, emulator_zs, full_ft, emulator_ft, plug_in,
});

/** The fixture's run results, in no particular order. */
export function fixtureResults(): RunResult[] {
  const gradot = (seed: number, piqa: TaskResult, arc: TaskResult, emulator: number, ppl: [number, number]): RunResult => ({
    formatVersion: 1,
    model: "tiny-opt",
    method: "gradot",
    label: "gradot",
    seed,
    // key order differs between seeds on purpose: settings compare by content
    settings: seed === 1 ? { lambda: { mlp: 2, attn: 1 }, ratio: 0.5 } : { ratio: 0.5, lambda: { attn: 1, mlp: 2 } },
    emulator_params: emulator,
    middle_params: 200,
    metric: "acc_norm",
    tasks: { piqa, arc_easy: arc },
    ppl: { full: 20, emulator: ppl[0], plug_in: ppl[1] },
  });
  return [
    gradot(2, task(100, 60, 36, 74, 42, 54), task(40, 45, 28, 80, 52, 66), 120, [60, 22]),
    gradot(0, task(100, 60, 30, 70, 40, 50), task(40, 45, 25, 80, 50, 60), 100, [50, 21]),
    gradot(1, task(100, 60, 33, 72, 44, 52), task(40, 45, 25, null, 50, 60), 110, [55, 23]),
    {
      formatVersion: 1,
      model: "tiny-opt",
      method: "ot-layerdrop",
      label: "ot-layerdrop",
      seed: 7,
      settings: { keep_every: 2 },
      emulator_params: 100,
      middle_params: 200,
      metric: "acc_norm",
      tasks: { piqa: task(100, 60, 29, 70, 45, 48), arc_easy: task(40, 45, 26, 80, 51, 58) },
      ppl: { full: 20, emulator: 70, plug_in: null },
    },
  ];
}

/**
 * The expected "gradot" row, by hand. Per-seed task averages:
 * plug-in 55, 56, 60; emulator FT 45, 47, 47; Δ 10, 9, 13; emulator ZS 27.5, 29, 32;
 * full ZS 52.5 each. Sample std (n − 1) of those: √7, √(4/3), √(13/3), √5.25, 0.
 */
export const GRADOT = {
  plug_in: [57, Math.sqrt(7)],
  emulator_ft: [139 / 3, Math.sqrt(4 / 3)],
  delta: [32 / 3, Math.sqrt(13 / 3)],
  emulator_zs: [29.5, Math.sqrt(5.25)],
  full_zs: [52.5, 0],
  // full_ft: arc_easy lacks seed 1, so the average is null; piqa alone has it
  piqa: { plug_in: [52, 2], emulator_ft: [42, 2], delta: [10, 2], full_ft: [72, 2], emulator_zs: [33, 3] },
  arc_easy: { plug_in: [62, Math.sqrt(12)], emulator_ft: [152 / 3, Math.sqrt(4 / 3)], delta: [34 / 3, 4 / Math.sqrt(3)] },
  emulator_params: [110, 10],
  ppl: { full: [20, 0], emulator: [55, 5], plug_in: [22, 1] },
} as const;
