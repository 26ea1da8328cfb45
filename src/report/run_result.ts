/**
 * The result of one offsite-tuning run (one method × one seed), as the demo and
 * the experiment scripts write it and `offtune report` reads it: the numbers of
 * the docs/METHOD.md §1 table for every task, plus perplexities (§5).
 *
 * Layout of a runs directory (docs/REPORT.md is the full description):
 *
 * ```
 * <runs>/<label>/seed-<n>/result.json     one per method label × seed
 * ```
 *
 * This module owns the type, its validator, and the path/read/write helpers,
 * so every writer and the reader agree on one definition.
 *
 * @module
 */
import { join } from "node:path";
import { readWholeFile, writeFileAtomic } from "../io/atomic.ts";

/** The `formatVersion` this module writes and reads. */
export const RUN_RESULT_FORMAT_VERSION = 1;

/** File name of a run result inside its `seed-<n>` directory. */
export const RUN_RESULT_FILE = "result.json";

/** Which accuracy the task numbers are: plain or length-normalised (docs/METHOD.md §5). */
export type AccuracyMetric = "acc" | "acc_norm";

/**
 * One task's accuracies for one run, as percentages in [0, 100] (docs/METHOD.md §1):
 * the original model zero-shot, the emulator (untuned adapter + E') zero-shot,
 * the whole model fine-tuned, the tuned adapter on E' and the tuned adapter
 * plugged into E. `full_ft` is null when full fine-tuning was not run.
 */
export interface TaskResult {
  /** Number of evaluated examples. */
  n: number;
  full_zs: number;
  emulator_zs: number;
  full_ft: number | null;
  emulator_ft: number;
  plug_in: number;
  /**
   * Chance accuracy of the evaluated items, percent: the mean over items of
   * 100 / (number of choices) (docs/METHOD.md §5). Optional: files written
   * before it existed lack it.
   */
  chance?: number;
}

/** Perplexities on held-out text (docs/METHOD.md §5); `plug_in` is null when not measured. */
export interface RunPerplexity {
  full: number;
  emulator: number;
  plug_in: number | null;
}

/** One run's result: `<runs>/<label>/seed-<seed>/result.json`. */
export interface RunResult {
  /** Format version of result.json (docs/REPORT.md). */
  formatVersion: typeof RUN_RESULT_FORMAT_VERSION;
  /** The source model, e.g. "facebook/opt-1.3b" or a fixture name. */
  model: string;
  /** The method, e.g. "gradot", "scaleot", "crash", "ot-layerdrop". */
  method: string;
  /** The row label, unique per method + settings; also the directory name. */
  label: string;
  /** The tuning seed; equals the `seed-<n>` directory. */
  seed: number;
  /** The method's settings (ratios, λ, ranks, adapter split...), free-form JSON. */
  settings: Record<string, unknown>;
  /** Parameters of the emulator's middle E'. */
  emulator_params: number;
  /** Parameters of the original middle E. */
  middle_params: number;
  /** Whether the task numbers are `acc` or `acc_norm`. */
  metric: AccuracyMetric;
  /** Accuracies by task name. */
  tasks: Record<string, TaskResult>;
  /** Perplexities on held-out text. */
  ppl: RunPerplexity;
  /**
   * Seconds the emulator build took (`build-emulator --timings`), the model
   * owner's cost of the method (docs/REPORT.md). Optional: files written
   * before it existed lack it.
   */
  emulator_build_s?: number;
}

/** A run result that fails validation: names the file and the field at fault. */
export class RunResultError extends Error {
  /** The file at fault. */
  readonly file: string;
  /** Dotted path of the field at fault (e.g. `tasks.piqa.plug_in`), or "" for the whole file. */
  readonly field: string;

  constructor(file: string, field: string, problem: string, options?: { cause?: unknown }) {
    super(
      field === ""
        ? `Invalid run result "${file}": ${problem}`
        : `Invalid run result "${file}": field "${field}" ${problem}`,
      options,
    );
    this.name = "RunResultError";
    this.file = file;
    this.field = field;
  }
}

/** Labels are directory names: a letter or digit, then letters, digits, `.`, `_`, `+`, `-`. */
const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

const TOP_KEYS = [
  "formatVersion", "model", "method", "label", "seed", "settings",
  "emulator_params", "middle_params", "metric", "tasks", "ppl",
] as const;
const TOP_OPTIONAL_KEYS = ["emulator_build_s"] as const;
const TASK_KEYS = ["n", "full_zs", "emulator_zs", "full_ft", "emulator_ft", "plug_in"] as const;
const TASK_OPTIONAL_KEYS = ["chance"] as const;
const PPL_KEYS = ["full", "emulator", "plug_in"] as const;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The checks, bound to one file so each failure names it and the field. */
function checker(file: string) {
  const fail = (field: string, problem: string): never => {
    throw new RunResultError(file, field, problem);
  };
  const object = (
    value: unknown,
    field: string,
    keys: readonly string[],
    optional: readonly string[] = [],
  ): Record<string, unknown> => {
    if (!isPlainObject(value)) return fail(field, `must be an object, got ${describe(value)}`);
    for (const key of keys) {
      if (!(key in value)) fail(field === "" ? key : `${field}.${key}`, "is missing");
    }
    for (const key of Object.keys(value)) {
      if (!keys.includes(key) && !optional.includes(key)) {
        fail(field === "" ? key : `${field}.${key}`, `is not a field of format version ${RUN_RESULT_FORMAT_VERSION}`);
      }
    }
    return value;
  };
  const text = (value: unknown, field: string): string =>
    typeof value === "string" && value.length > 0 ? value : fail(field, `must be a non-empty string, got ${describe(value)}`);
  const integer = (value: unknown, field: string, min: number): number =>
    typeof value === "number" && Number.isSafeInteger(value) && value >= min
      ? value
      : fail(field, `must be an integer ≥ ${min}, got ${describe(value)}`);
  const percent = (value: unknown, field: string): number =>
    typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= 100
      ? value
      : fail(field, `must be a percentage in [0, 100], got ${describe(value)}`);
  const seconds = (value: unknown, field: string): number =>
    typeof value === "number" && Number.isFinite(value) && value >= 0
      ? value
      : fail(field, `must be a finite number of seconds ≥ 0, got ${describe(value)}`);
  const perplexity = (value: unknown, field: string): number =>
    typeof value === "number" && Number.isFinite(value) && value >= 1
      ? value
      : fail(field, `must be a finite perplexity ≥ 1, got ${describe(value)}`);
  const nullable = <T>(check: (v: unknown, f: string) => T) => (value: unknown, field: string): T | null =>
    value === null ? null : check(value, field);
  return { fail, object, text, integer, percent, seconds, perplexity, nullable };
}

/**
 * Checks that `value` (parsed JSON) is a {@link RunResult} of the current
 * format version and returns it typed. Unknown fields are refused (they are
 * most often misspellings); free-form data belongs in `settings`.
 *
 * @param file the path named in error messages
 * @throws RunResultError naming `file` and the first bad field
 */
export function validateRunResult(value: unknown, file: string): RunResult {
  const c = checker(file);
  if (isPlainObject(value) && "formatVersion" in value && value.formatVersion !== RUN_RESULT_FORMAT_VERSION) {
    c.fail("formatVersion", `must be ${RUN_RESULT_FORMAT_VERSION}, got ${describe(value.formatVersion)}`);
  }
  const top = c.object(value, "", TOP_KEYS, TOP_OPTIONAL_KEYS);
  const label = c.text(top.label, "label");
  if (!LABEL_PATTERN.test(label)) {
    c.fail("label", `must be usable as a directory name (letters, digits, ".", "_", "+", "-"), got ${describe(label)}`);
  }
  if (!isPlainObject(top.settings)) c.fail("settings", `must be an object, got ${describe(top.settings)}`);
  if (top.metric !== "acc" && top.metric !== "acc_norm") {
    c.fail("metric", `must be "acc" or "acc_norm", got ${describe(top.metric)}`);
  }
  if (!isPlainObject(top.tasks)) c.fail("tasks", `must be an object, got ${describe(top.tasks)}`);
  const taskEntries = Object.entries(top.tasks as Record<string, unknown>);
  if (taskEntries.length === 0) c.fail("tasks", "must hold at least one task");
  const tasks: Record<string, TaskResult> = {};
  for (const [name, entry] of taskEntries) {
    const f = `tasks.${name}`;
    const t = c.object(entry, f, TASK_KEYS, TASK_OPTIONAL_KEYS);
    tasks[name] = {
      n: c.integer(t.n, `${f}.n`, 1),
      full_zs: c.percent(t.full_zs, `${f}.full_zs`),
      emulator_zs: c.percent(t.emulator_zs, `${f}.emulator_zs`),
      full_ft: c.nullable(c.percent)(t.full_ft, `${f}.full_ft`),
      emulator_ft: c.percent(t.emulator_ft, `${f}.emulator_ft`),
      plug_in: c.percent(t.plug_in, `${f}.plug_in`),
      ...(t.chance === undefined ? {} : { chance: c.percent(t.chance, `${f}.chance`) }),
    };
  }
  const p = c.object(top.ppl, "ppl", PPL_KEYS);
  return {
    formatVersion: RUN_RESULT_FORMAT_VERSION,
    model: c.text(top.model, "model"),
    method: c.text(top.method, "method"),
    label,
    seed: c.integer(top.seed, "seed", 0),
    settings: top.settings as Record<string, unknown>,
    emulator_params: c.integer(top.emulator_params, "emulator_params", 1),
    middle_params: c.integer(top.middle_params, "middle_params", 1),
    metric: top.metric as AccuracyMetric,
    tasks,
    ppl: {
      full: c.perplexity(p.full, "ppl.full"),
      emulator: c.perplexity(p.emulator, "ppl.emulator"),
      plug_in: c.nullable(c.perplexity)(p.plug_in, "ppl.plug_in"),
    },
    ...(top.emulator_build_s === undefined ? {} : { emulator_build_s: c.seconds(top.emulator_build_s, "emulator_build_s") }),
  };
}

/**
 * Parses and validates the text of a result.json.
 *
 * @throws RunResultError naming `file` (and the field, or "not valid JSON")
 */
export function parseRunResult(text: string, file: string): RunResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RunResultError(file, "", `not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return validateRunResult(value, file);
}

/** Where a run's result lives: `<runs>/<label>/seed-<seed>/result.json`. */
export function runResultPath(runsDir: string, label: string, seed: number): string {
  return join(runsDir, label, `seed-${seed}`, RUN_RESULT_FILE);
}

/** Reads and validates one result.json. */
export async function readRunResult(path: string): Promise<RunResult> {
  const bytes = await readWholeFile(path, "run result");
  return parseRunResult(new TextDecoder().decode(bytes), path);
}

/**
 * Validates `result` and writes it atomically to its place under `runsDir`
 * (see {@link runResultPath}), creating directories as needed. Returns the path.
 *
 * @throws RunResultError if `result` is not a valid run result
 */
export async function writeRunResult(runsDir: string, result: RunResult): Promise<string> {
  const path = runResultPath(runsDir, result.label, result.seed);
  const checked = validateRunResult(result, path);
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(checked, null, 2) + "\n"));
  return path;
}
