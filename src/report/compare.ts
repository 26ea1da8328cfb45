/**
 * The report's intervals (docs/REPORT.md "Comparisons"): each row against a
 * reference row (Plug-in, Δ and Emulator ZS), and each row's own claims
 * against the full model (Plug-in − Full FT, Emulator ZS − Full ZS), as mean
 * differences with paired Student t intervals (src/eval/stats.ts).
 *
 * What is paired: the tuned columns (Plug-in, Δ, Full FT) vary with the seed,
 * so they pair by (task, seed), over the seeds both sides ran; the zero-shot
 * columns do not, so they pair by task, one value each (the mean over the
 * row's seeds, which all score the same untuned models).
 *
 * Pure: no files.
 *
 * @module
 */
import { type DifferenceInterval, pairedTInterval } from "../eval/stats.ts";
import type { RunResult } from "./run_result.ts";

/** The confidence of every interval of the report. */
export const CONFIDENCE = 0.95;

/** One row against its reference row: row − reference, each with its interval. */
export interface Comparison {
  /** The row. */
  label: string;
  /** The reference row. */
  reference: string;
  /** The seeds both rows ran: the tuned columns pair over these × tasks. */
  seeds: number[];
  /** Plug-in accuracy, row − reference; null when the rows share no seed. */
  plug_in: DifferenceInterval | null;
  /** Δ = Plug-in − Emulator FT, row − reference; null when the rows share no seed. */
  delta: DifferenceInterval | null;
  /** Emulator ZS accuracy, row − reference, paired by task. */
  emulator_zs: DifferenceInterval;
}

/** A row's claims against the full model (docs/METHOD.md §1). */
export interface RowClaims {
  /** Plug-in − Full FT over the (task, seed) pairs where Full FT was run; null where it never was. */
  plug_in_vs_full_ft: DifferenceInterval | null;
  /** Emulator ZS − Full ZS, paired by task. */
  emulator_zs_vs_full_zs: DifferenceInterval;
}

/** What {@link pickReferences} needs of a row. */
export interface RowKey {
  label: string;
  method: string;
  ratio: number | null;
}

/** The method whose row is the default reference (docs/REPORT.md "Comparisons"). */
export const DEFAULT_REFERENCE_METHOD = "gradot";

/**
 * Which row each row is compared with: `baseline` for every other row when
 * given; else the GradOT row (method `gradot`) at the row's ratio, the first
 * by label when there are several. A row is never compared with itself, and a
 * row without a ratio or a GradOT row at it has no reference.
 *
 * @returns row label → reference label, in the rows' order
 * @throws Error when `baseline` names no row
 */
export function pickReferences(rows: readonly RowKey[], baseline?: string): Map<string, string> {
  const references = new Map<string, string>();
  if (baseline !== undefined) {
    if (!rows.some((r) => r.label === baseline)) {
      throw new Error(`--baseline: no row is labelled "${baseline}" (rows: ${rows.map((r) => r.label).join(", ")})`);
    }
    for (const row of rows) if (row.label !== baseline) references.set(row.label, baseline);
    return references;
  }
  const gradot = [...rows].filter((r) => r.method === DEFAULT_REFERENCE_METHOD && r.ratio !== null)
    .sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  for (const row of rows) {
    const reference = gradot.find((g) => g.ratio === row.ratio);
    if (row.ratio !== null && reference && reference.label !== row.label) references.set(row.label, reference.label);
  }
  return references;
}

/** Per-task mean over `results` (a row's seeds) of `value`. */
function perTask(results: readonly RunResult[], tasks: readonly string[], value: (r: RunResult, task: string) => number): number[] {
  return tasks.map((task) => results.reduce((sum, r) => sum + value(r, task), 0) / results.length);
}

const plugIn = (r: RunResult, task: string) => r.tasks[task].plug_in;
const delta = (r: RunResult, task: string) => r.tasks[task].plug_in - r.tasks[task].emulator_ft;

/**
 * `row` − `reference` for Plug-in and Δ paired by (task, seed), and Emulator
 * ZS paired by task, with {@link CONFIDENCE} intervals. Each list holds one
 * label's results.
 */
export function compareRows(row: readonly RunResult[], reference: readonly RunResult[], tasks: readonly string[]): Comparison {
  const refBySeed = new Map(reference.map((r) => [r.seed, r]));
  const pairs = row.filter((r) => refBySeed.has(r.seed)).map((r) => [r, refBySeed.get(r.seed)!] as const);
  const paired = (value: (r: RunResult, task: string) => number) =>
    pairs.length === 0
      ? null
      : pairedTInterval(pairs.flatMap(([mine, theirs]) => tasks.map((t) => value(mine, t) - value(theirs, t))), CONFIDENCE);
  const zs = (r: RunResult, task: string) => r.tasks[task].emulator_zs;
  const mineZs = perTask(row, tasks, zs);
  const theirZs = perTask(reference, tasks, zs);
  return {
    label: row[0].label,
    reference: reference[0].label,
    seeds: pairs.map(([mine]) => mine.seed),
    plug_in: paired(plugIn),
    delta: paired(delta),
    emulator_zs: pairedTInterval(mineZs.map((m, i) => m - theirZs[i]), CONFIDENCE),
  };
}

/** A row's {@link RowClaims} from its seeds' results. */
export function rowClaims(results: readonly RunResult[], tasks: readonly string[]): RowClaims {
  const fullFt = results.flatMap((r) =>
    tasks.flatMap((t) => (r.tasks[t].full_ft === null ? [] : [r.tasks[t].plug_in - r.tasks[t].full_ft]))
  );
  return {
    plug_in_vs_full_ft: fullFt.length === 0 ? null : pairedTInterval(fullFt, CONFIDENCE),
    emulator_zs_vs_full_zs: pairedTInterval(perTask(results, tasks, (r, t) => r.tasks[t].emulator_zs - r.tasks[t].full_zs), CONFIDENCE),
  };
}
