/**
 * Builds the seeds' table (docs/METHOD.md §1, §5) from run results: for every row
 * (method label) the Full ZS, Emulator ZS, Full FT, Emulator FT, Plug-in and
 * Δ = Plug-in − Emulator FT accuracies per task and averaged over tasks, and
 * the perplexities, each as a mean over seeds with its spread.
 *
 * Averaging order: a seed's task average is the unweighted mean over tasks (the
 * GradOT table's "avg. of 8 tasks"); the row value is the mean of those over
 * seeds and its spread is their sample standard deviation (n − 1; null with a
 * single seed). Δ is formed per seed before averaging, so its spread is the
 * spread of the per-seed differences, not a sum of the two spreads.
 *
 * Pure: no files. The object returned is report.json (docs/REPORT.md).
 *
 * @module
 */
import { meanStd } from "../eval/stats.ts";
import { type Comparison, compareRows, pickReferences, type RowClaims, rowClaims } from "./compare.ts";
import type { LoadedRun } from "./load_runs.ts";
import { type AccuracyMetric, RunResultError, type RunResult } from "./run_result.ts";

/** The accuracy columns of the table, in table order. */
export const ACCURACY_KEYS = ["full_zs", "emulator_zs", "full_ft", "emulator_ft", "plug_in", "delta"] as const;

/** One accuracy column. */
export type AccuracyKey = (typeof ACCURACY_KEYS)[number];

/** Column headings of the accuracy columns, in table order (docs/METHOD.md §1). */
export const ACCURACY_HEADINGS: Record<AccuracyKey, string> = {
  full_zs: "Full ZS",
  emulator_zs: "Emu ZS",
  full_ft: "Full FT",
  emulator_ft: "Emu FT",
  plug_in: "Plug-in",
  delta: "Δ",
};

/**
 * The accuracy columns of one cell set, means over seeds (percent). `full_ft`
 * is null unless every seed (and, for averages, every task) has it.
 */
export interface Accuracies {
  full_zs: number;
  emulator_zs: number;
  full_ft: number | null;
  emulator_ft: number;
  plug_in: number;
  delta: number;
}

/** Seed spreads (sample std) of the accuracy columns; null with one seed or a null mean. */
export type AccuracySpreads = Record<AccuracyKey, number | null>;

/** Perplexity means over seeds; `plug_in` null unless every seed measured it. */
export interface Perplexities {
  full: number;
  emulator: number;
  plug_in: number | null;
}

/** One task's cell set in a row. */
export interface TaskCell extends Accuracies {
  /** Examples evaluated per seed. */
  n: number;
  std: AccuracySpreads;
}

/** One row of report.json: one method label, averaged over its seeds. */
export interface ReportRow extends Accuracies {
  method: string;
  settings: Record<string, unknown>;
  /** Mean emulator middle size over seeds, rounded to an integer. */
  emulator_params: number;
  middle_params: number;
  per_task: Record<string, TaskCell>;
  ppl: Perplexities;
  /** Additional: the row label (directory name), unique per row. */
  label: string;
  /** Additional: the emulator's size as a percentage of the middle's. */
  emulator_ratio: number;
  /**
   * Additional: the ratio the emulator was built for, `settings.ratio` when it
   * is a number (every method of `experiment` records it), else null.
   */
  ratio: number | null;
  /**
   * Additional: the emulator build's seconds, the mean over seeds of
   * `emulator_build_s`; null when a seed lacks it (files written before it existed).
   */
  emulator_build_s: number | null;
  /** Additional: the row's claims against the full model, with 95% intervals (src/report/compare.ts). */
  claims: RowClaims;
  /** Additional: the number of seeds averaged, and which. */
  seeds: number;
  seed_ids: number[];
  /** Additional: seed spreads (sample std, null with one seed). */
  std: AccuracySpreads & {
    emulator_params: number | null;
    ppl: Record<keyof Perplexities, number | null>;
  };
}

/** report.json: the model, its tasks (sorted) and one row per label (sorted). */
export interface Report {
  /** The original model the runs start from. */
  model: string;
  /** The task names, sorted. */
  tasks: string[];
  /** One row per label, sorted. */
  rows: ReportRow[];
  /** Additional: which accuracy the numbers are. */
  metric: AccuracyMetric;
  /**
   * Additional: each task's chance accuracy in percent, the mean over the
   * runs' `chance`; null when a run lacks it (files written before it existed).
   */
  chance: Record<string, number | null>;
  /**
   * Additional: each row against its reference row, with 95% intervals
   * (src/report/compare.ts); rows without a reference are absent.
   */
  comparisons: Comparison[];
}

/** Mean/std over seeds of values that may be null: null unless every seed has one. */
function seedStats(values: readonly (number | null)[]): { mean: number | null; std: number | null } {
  return values.some((v) => v === null) ? { mean: null, std: null } : meanStd(values as number[]);
}

/** Accuracies of one seed on one task (or averaged over tasks), Δ included. */
type SeedAccuracies = Record<AccuracyKey, number | null>;

function withDelta(t: Omit<SeedAccuracies, "delta">): SeedAccuracies {
  return { ...t, delta: (t.plug_in as number) - (t.emulator_ft as number) };
}

function taskAverage(result: RunResult, tasks: readonly string[]): SeedAccuracies {
  const out = {} as SeedAccuracies;
  for (const key of ACCURACY_KEYS) {
    if (key === "delta") continue;
    const values = tasks.map((t) => result.tasks[t][key]);
    out[key] = values.some((v) => v === null) ? null : (values as number[]).reduce((a, b) => a + b, 0) / tasks.length;
  }
  return withDelta(out);
}

/** Means and spreads over seeds of per-seed accuracies. */
function combine(perSeed: readonly SeedAccuracies[]): { means: Accuracies; std: AccuracySpreads } {
  const means = {} as Record<AccuracyKey, number | null>;
  const std = {} as AccuracySpreads;
  for (const key of ACCURACY_KEYS) {
    const s = seedStats(perSeed.map((a) => a[key]));
    means[key] = s.mean;
    std[key] = s.std;
  }
  return { means: means as unknown as Accuracies, std };
}

/** JSON with object keys sorted, so equal settings compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}

const sameJson = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);

/**
 * Checks what must agree across all runs (model, metric, task set) and across
 * the seeds of one label (method, settings, middle size, examples per task).
 * @throws RunResultError naming the disagreeing file and field, and the file it disagrees with
 */
function checkConsistent(runs: readonly LoadedRun[]): void {
  const first = runs[0];
  const firstTasks = Object.keys(first.result.tasks).sort();
  const byLabel = new Map<string, LoadedRun>();
  const seen = new Map<string, string>();
  for (const run of runs) {
    const r = run.result;
    const key = `${r.label}/seed-${r.seed}`;
    const twin = seen.get(key);
    if (twin !== undefined) {
      throw new RunResultError(run.path, "seed", `repeats label "${r.label}" seed ${r.seed} of "${twin}"`);
    }
    seen.set(key, run.path);
    const against = (other: LoadedRun, field: string, mine: unknown, theirs: unknown, why: string) => {
      if (!sameJson(mine, theirs)) {
        throw new RunResultError(
          run.path,
          field,
          `is ${JSON.stringify(mine)} but "${other.path}" has ${JSON.stringify(theirs)}: ${why}`,
        );
      }
    };
    against(first, "model", r.model, first.result.model, "a report covers one model");
    against(first, "metric", r.metric, first.result.metric, "a report compares one accuracy metric");
    against(first, "tasks", Object.keys(r.tasks).sort(), firstTasks, "every run must evaluate the same tasks");
    const seed0 = byLabel.get(r.label);
    if (!seed0) {
      byLabel.set(r.label, run);
      continue;
    }
    const s = seed0.result;
    against(seed0, "method", r.method, s.method, "the seeds of a label run one method");
    against(seed0, "settings", r.settings, s.settings, "the seeds of a label share their settings");
    against(seed0, "middle_params", r.middle_params, s.middle_params, "the seeds of a label split the model alike");
    for (const task of firstTasks) {
      against(seed0, `tasks.${task}.n`, r.tasks[task].n, s.tasks[task].n, "the seeds of a label evaluate the same examples");
    }
  }
}

function buildRow(runs: readonly LoadedRun[], tasks: readonly string[]): ReportRow {
  const results = runs.map((r) => r.result);
  const head = results[0];
  const average = combine(results.map((r) => taskAverage(r, tasks)));
  const per_task: Record<string, TaskCell> = {};
  for (const task of tasks) {
    const cell = combine(results.map((r) => withDelta(r.tasks[task])));
    per_task[task] = { ...cell.means, n: head.tasks[task].n, std: cell.std };
  }
  const size = meanStd(results.map((r) => r.emulator_params));
  const ppl = {
    full: seedStats(results.map((r) => r.ppl.full)),
    emulator: seedStats(results.map((r) => r.ppl.emulator)),
    plug_in: seedStats(results.map((r) => r.ppl.plug_in)),
  };
  return {
    method: head.method,
    settings: head.settings,
    emulator_params: Math.round(size.mean),
    middle_params: head.middle_params,
    ...average.means,
    per_task,
    ppl: { full: ppl.full.mean as number, emulator: ppl.emulator.mean as number, plug_in: ppl.plug_in.mean },
    label: head.label,
    emulator_ratio: (100 * size.mean) / head.middle_params,
    ratio: typeof head.settings.ratio === "number" ? head.settings.ratio : null,
    emulator_build_s: seedStats(results.map((r) => r.emulator_build_s ?? null)).mean,
    claims: rowClaims(results, tasks),
    seeds: results.length,
    seed_ids: results.map((r) => r.seed),
    std: {
      ...average.std,
      emulator_params: size.std,
      ppl: { full: ppl.full.std, emulator: ppl.emulator.std, plug_in: ppl.plug_in.std },
    },
  };
}

/**
 * Aggregates run results into the report (report.json's content): one row per
 * label, ordered by label, seeds averaged as the module doc says, and each
 * row compared with its reference (`options.baseline`, else the GradOT row at
 * its ratio: src/report/compare.ts `pickReferences`).
 *
 * @throws Error if `runs` is empty or `options.baseline` names no row;
 *   RunResultError if runs disagree on what must agree
 */
export function aggregateRuns(runs: readonly LoadedRun[], options: { baseline?: string } = {}): Report {
  if (runs.length === 0) throw new Error("Cannot build a report from no runs");
  checkConsistent(runs);
  const tasks = Object.keys(runs[0].result.tasks).sort();
  const byLabel = new Map<string, LoadedRun[]>();
  for (const run of runs) {
    const list = byLabel.get(run.result.label) ?? [];
    list.push(run);
    byLabel.set(run.result.label, list);
  }
  const labels = [...byLabel.keys()].sort();
  for (const list of byLabel.values()) list.sort((a, b) => a.result.seed - b.result.seed);
  const resultsOf = (label: string) => byLabel.get(label)!.map((r) => r.result);
  const rows = labels.map((label) => buildRow(byLabel.get(label)!, tasks));
  return {
    model: runs[0].result.model,
    tasks,
    rows,
    metric: runs[0].result.metric,
    chance: Object.fromEntries(tasks.map((t) => [t, seedStats(runs.map((r) => r.result.tasks[t].chance ?? null)).mean])),
    comparisons: [...pickReferences(rows, options.baseline)].map(([label, reference]) =>
      compareRows(resultsOf(label), resultsOf(reference), tasks)
    ),
  };
}
