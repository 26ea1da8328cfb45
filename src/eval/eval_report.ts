/**
 * Evaluation as one call (`offtune eval`): zero-shot multiple choice by
 * log-likelihood and perplexity on held-out text (docs/METHOD.md §5), for any
 * artefact of §1 — an original checkpoint, an emulator package, either with
 * a tuned adapter — and the report it gives: acc and acc_norm with Wilson
 * 95% intervals, chance, whether each interval lies above chance, the task
 * average, and optionally perplexity with an add-one unigram reference.
 *
 * @module
 */
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readTokensOfFile } from "../data/text_tokens.ts";
import { TASKS } from "../data/tasks/registry.ts";
import type { McItem, TaskSplit } from "../data/tasks/types.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { MANIFEST_FILE, readManifest } from "../io/manifest.ts";
import { refuseFixtureStreamFor, tokenizerFor } from "../io/tokenizer_for.ts";
import { openSource, withAdapter } from "../model/model_source.ts";
import type { AdapterSplit, ModelHandle } from "../records/records.ts";
import { currentBackend, initBackend } from "../tensor/backend.ts";
import type { Residency } from "./loglikelihood.ts";
import { type McSummary, scoreMultipleChoice, summarizeMultipleChoice } from "./multiple_choice.ts";
import { bitsPerByte, modelPerplexity, predictedBytes, unigramPerplexity } from "./perplexity.ts";
import { aboveChance, type AccuracyStats, averageStats } from "./stats.ts";
import { listTasks, readTaskItems } from "./task_file.ts";
import { ScoringPool } from "./scoring_pool.ts";
import { requireFinishedAdapter } from "../train/tune_package.ts";

const fixture = (path: string) => fileURLToPath(new URL(`../../fixtures/${path}`, import.meta.url));

/** Where evaluation looks for data unless told otherwise: the shipped fixtures. */
export const EVAL_DEFAULTS = {
  tasksDir: fixture("data/tasks"),
  pplData: fixture("data/pretrain/valid.bin"),
  pplTrain: fixture("data/pretrain/train.bin"),
};

const SPLITS: readonly TaskSplit[] = ["test", "validation", "train"];

/**
 * `value` as a task split (test, validation or train).
 *
 * @throws Error naming the value and the splits
 */
export function parseTaskSplit(value: string): TaskSplit {
  if (!SPLITS.includes(value as TaskSplit)) throw new Error(`--split expects one of ${SPLITS.join(", ")}, got "${value}"`);
  return value as TaskSplit;
}

/** The names of the shipped fixture tasks (fixtures/data/tasks), in report order. */
export const FIXTURE_TASKS: readonly string[] = TASKS.map((t) => t.name);

/** `names` in report order: the fixture tasks in their registry order, then any others by name. */
function reportOrder(names: readonly string[]): string[] {
  const known = FIXTURE_TASKS;
  const rank = (name: string) => (known.includes(name) ? known.indexOf(name) : known.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The task names a `--tasks` value selects among `available` (the tasks of
 * the tasks directory `tasksDir`, see `listTasks`), in report order: `all`,
 * or comma-separated names.
 *
 * @throws Error naming the directory for a name that is not a task there,
 *   when the list names none, or when `all` finds no task
 */
export function selectTasks(value: string, available: readonly string[], tasksDir: string): string[] {
  if (value.trim() === "all") {
    if (available.length === 0) throw new Error(`No tasks in "${tasksDir}": a task is a directory holding test.jsonl (or train/validation.jsonl)`);
    return reportOrder(available);
  }
  const asked = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (asked.length === 0) throw new Error(`--tasks names no task: "${value}"`);
  for (const name of asked) {
    if (!available.includes(name)) {
      throw new Error(
        `Unknown task "${name}": no "${name}/" with task files in "${tasksDir}" (--tasks-dir sets the directory; tasks there: ${available.join(", ") || "none"})`,
      );
    }
  }
  return reportOrder(available.filter((name) => asked.includes(name)));
}

const exists = (path: string) => access(path).then(() => true, () => false);

/**
 * Opens `modelDir` (checkpoint or package) for evaluation, with the adapter
 * package `adapterDir` applied when given (its manifest's split is used;
 * the split matters to nothing else here). An unfinished adapter (an epoch
 * checkpoint of a tuning run) is refused before the model is opened, unless
 * `allowUnfinished`.
 */
export async function openForEval(modelDir: string, adapterDir: string | undefined, allowUnfinished = false): Promise<ModelHandle> {
  let split: AdapterSplit = { bottom: 0, top: 0 };
  if (adapterDir !== undefined) {
    if (!(await exists(join(adapterDir, MANIFEST_FILE)))) throw new Error(`Adapter "${adapterDir}" has no ${MANIFEST_FILE}`);
    const manifest = await readManifest(adapterDir);
    if (!allowUnfinished) requireFinishedAdapter(adapterDir, manifest);
    split = manifest.split;
  }
  const base = await openSource(modelDir, { split });
  if (adapterDir === undefined) return base;
  try {
    return await withAdapter(base, adapterDir, { allowUnfinished });
  } catch (e) {
    await base.close();
    throw e;
  }
}

/** One accuracy pair in the report's JSON form (stable keys, lm-eval names). */
export interface AccuracyJson {
  /** Accuracy by the summed log-likelihood of each choice, in [0, 1]. */
  acc: number;
  /** Its standard error (lm-eval's `acc_stderr`). */
  acc_stderr: number;
  /** Its 95% interval (Wilson for a task, normal for an average). */
  acc_ci: [number, number];
  /** Accuracy by the length-normalised log-likelihood. */
  acc_norm: number;
  /** Its standard error. */
  acc_norm_stderr: number;
  /** Its 95% interval. */
  acc_norm_ci: [number, number];
  /** The accuracy of guessing (1 / choices, averaged over items). */
  chance: number;
  /** Whether `acc_ci` lies wholly above chance. */
  acc_above_chance: boolean;
  /** Whether `acc_norm_ci` lies wholly above chance. */
  acc_norm_above_chance: boolean;
}

function accuracyJson(acc: AccuracyStats, accNorm: AccuracyStats, chance: number): AccuracyJson {
  return {
    acc: acc.mean,
    acc_stderr: acc.stderr,
    acc_ci: acc.ci,
    acc_norm: accNorm.mean,
    acc_norm_stderr: accNorm.stderr,
    acc_norm_ci: accNorm.ci,
    chance,
    acc_above_chance: aboveChance(acc, chance),
    acc_norm_above_chance: aboveChance(accNorm, chance),
  };
}

/** An evaluation's results, as `offtune eval --json` writes them (docs/REPORT.md reads them). */
export interface EvalReport {
  /** The model or package evaluated (absolute path). */
  model: string;
  /** The adapter applied (absolute path), or null. */
  adapter: string | null;
  /** The task split scored. */
  split: TaskSplit;
  /** Items per task when limited, else null. */
  limit: number | null;
  /** Whether BOS preceded each context. */
  bos: boolean;
  /** The tensor backend that ran. */
  backend: string;
  /** Wall seconds of the evaluation. */
  seconds: number;
  /** Per task: items scored and accuracies. */
  tasks: Record<string, { n: number } & AccuracyJson>;
  /** The mean over tasks (null without tasks). */
  average: ({ tasks: number } & AccuracyJson) | null;
  /**
   * Perplexity on held-out text, when asked for: window, tokens, NLL
   * (nats/token), bits per byte over the bytes the predicted tokens decode
   * to (src/eval/perplexity.ts), and the unigram reference.
   */
  ppl?: {
    data: string;
    ctx: number;
    tokens: number;
    nll: number;
    ppl: number;
    bytes: number;
    bpb: number;
    unigram: { train: string; nll: number; ppl: number } | null;
  };
}

/** The report's tasks and average from scored tasks, without the run's metadata. */
export function buildEvalReport(
  summaries: ReadonlyMap<string, McSummary>,
): Pick<EvalReport, "tasks" | "average"> {
  const tasks: EvalReport["tasks"] = {};
  for (const [name, s] of summaries) tasks[name] = { n: s.n, ...accuracyJson(s.acc, s.accNorm, s.chance) };
  const all = [...summaries.values()];
  const average = all.length === 0 ? null : {
    tasks: all.length,
    ...accuracyJson(
      averageStats(all.map((s) => s.acc)),
      averageStats(all.map((s) => s.accNorm)),
      all.reduce((sum, s) => sum + s.chance, 0) / all.length,
    ),
  };
  return { tasks, average };
}

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : "?");

/** `33.4 [29.4, 37.6]*`: accuracy, interval, above-chance mark. */
function cell(mean: number, ci: [number, number], above: boolean): string {
  return `${pct(mean).padStart(5)} [${pct(ci[0]).padStart(4)}, ${pct(ci[1]).padStart(5)}]${above ? "*" : " "}`;
}

/** The table `offtune eval` prints for a report. */
export function formatEvalReport(report: Pick<EvalReport, "tasks" | "average" | "ppl">): string {
  type Row = { name: string; n: string; scores: AccuracyJson };
  const rows: Row[] = Object.entries(report.tasks).map(([name, t]) => ({ name, n: String(t.n), scores: t }));
  const average: Row | undefined = report.average
    ? { name: "average", n: `${report.average.tasks} tasks`, scores: report.average }
    : undefined;
  const all = average ? [...rows, average] : rows;
  const width = Math.max(4, ...all.map((r) => r.name.length));
  const nWidth = Math.max(1, ...all.map((r) => r.n.length));
  const header = `${"task".padEnd(width)}  ${"n".padStart(nWidth)}  ${"acc % [95% CI]".padEnd(20)}  ${"acc_norm % [95% CI]".padEnd(20)}  chance %`;
  const rule = "-".repeat(header.length);
  const line = ({ name, n, scores: s }: Row) =>
    `${name.padEnd(width)}  ${n.padStart(nWidth)}  ${cell(s.acc, s.acc_ci, s.acc_above_chance).padEnd(20)}  ` +
    `${cell(s.acc_norm, s.acc_norm_ci, s.acc_norm_above_chance).padEnd(20)}  ${pct(s.chance).padStart(8)}`;
  const lines = [header, rule, ...rows.map(line)];
  if (average) lines.push(rule, line(average));
  lines.push("* interval (Wilson 95%; average: normal) wholly above chance");
  if (report.ppl) {
    const p = report.ppl;
    lines.push(
      "",
      `perplexity ${p.ppl.toFixed(2)} (NLL ${p.nll.toFixed(4)} nats/token, ${p.bpb.toFixed(4)} bits/byte, ` +
        `${p.tokens} tokens, ${p.bytes} bytes, window ${p.ctx}) on ${p.data}`,
    );
    if (p.unigram) lines.push(`unigram reference ${p.unigram.ppl.toFixed(2)} (NLL ${p.unigram.nll.toFixed(4)}, add-one, counts from ${p.unigram.train})`);
  }
  return lines.join("\n");
}

/** What {@link evaluate} scores, and how. */
export interface EvaluateOptions {
  /** A Hugging Face checkpoint or an emulator package. */
  model: string;
  /** A tuned adapter package to apply first. */
  adapter?: string;
  /** Apply an unfinished adapter (an epoch checkpoint) instead of refusing it. */
  allowUnfinished?: boolean;
  /** Task names (default every task of `tasksDir`, `listTasks`; {@link selectTasks}). */
  tasks?: string[];
  /** Where task names are read (default {@link EVAL_DEFAULTS}.tasksDir). */
  tasksDir?: string;
  /** Which split of each task (default test). */
  split?: TaskSplit;
  /** First n items of each task. */
  limit?: number;
  /** Put the BOS token before each context (default true). */
  bos?: boolean;
  /** One block resident at a time (`streaming`) or all (`resident`, the default). */
  residency?: Residency;
  /** Rows × padded length per forward batch (default 2048). */
  batchTokens?: number;
  /** tokenizer.json (default: the model's own, else the fixture one; `tokenizerFor`). */
  tokenizer?: string;
  /**
   * Also measure perplexity on `data` (plain text or `.jsonl` of `{"text"}`
   * documents, tokenized with the model's tokenizer, or a Uint16 token
   * stream `.bin`: src/data/text_tokens.ts; default
   * {@link EVAL_DEFAULTS}.pplData) in windows of `ctx` (default the model's
   * positions), with the add-one unigram reference counted on `train`
   * (default {@link EVAL_DEFAULTS}.pplTrain with the default data only, its
   * counts being fixture-tokenizer ids; skipped when that default is absent).
   */
  ppl?: { data?: string; train?: string; ctx?: number };
  /** No notices (the fixture-tokenizer fallback, a skipped unigram reference). */
  quiet?: boolean;
  /** Receives the multiple-choice `loglikelihood` events (unit requests), then the perplexity ones (unit windows). */
  events?: StageEvents;
  /**
   * Threads scoring the batches: `n - 1` worker threads and this one, each
   * holding the whole model (src/eval/scoring_pool.ts); default 1, resident
   * only. The report is the same for any count (docs/DISTRIBUTED.md "How tune
   * and eval use the cores").
   */
  workers?: number;
}

/** Scores the tasks (and perplexity) of `options.model` and returns the report (module notes). */
export async function evaluate(options: EvaluateOptions): Promise<EvalReport> {
  const split = parseTaskSplit(options.split ?? "test");
  const tasksDir = options.tasksDir ?? EVAL_DEFAULTS.tasksDir;
  const tasks = options.tasks ?? selectTasks("all", await listTasks(tasksDir), tasksDir);
  const residency = options.residency ?? "resident";
  const bos = options.bos ?? true;
  const quiet = options.quiet ?? false;
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`Evaluation threads must be a positive integer, got ${workers}`);
  if (workers > 1 && residency === "streaming") throw new Error("Scoring on several threads holds the whole model in each: not with streaming residency");
  const backend = currentBackend() ?? (await initBackend(undefined, quiet));
  const started = performance.now();
  const itemsByTask = new Map<string, McItem[]>();
  for (const name of tasks) itemsByTask.set(name, await readTaskItems(tasksDir, name, split, options.limit));
  const model = await openForEval(options.model, options.adapter, options.allowUnfinished ?? false);
  let pool: ScoringPool | undefined;
  try {
    const { tokenizer, path: tokenizerPath } = await tokenizerFor(options.model, model.cfg, options.tokenizer, quiet);
    if (options.ppl && options.ppl.data === undefined) await refuseFixtureStreamFor("--ppl-data", EVAL_DEFAULTS.pplData, tokenizerPath);
    const allItems = [...itemsByTask.values()].flat();
    if (workers > 1) pool = await ScoringPool.start(model, workers);
    const results = await scoreMultipleChoice(model, tokenizer, allItems, {
      bos,
      residency,
      pool,
      batchTokens: options.batchTokens,
      padId: tokenizer.padId,
      events: options.events,
    });
    const summaries = new Map<string, McSummary>();
    let at = 0;
    for (const [name, items] of itemsByTask) {
      summaries.set(name, summarizeMultipleChoice(results.slice(at, at + items.length)));
      at += items.length;
    }
    const report: EvalReport = {
      model: resolve(options.model),
      adapter: options.adapter === undefined ? null : resolve(options.adapter),
      split,
      limit: options.limit ?? null,
      bos,
      backend,
      seconds: 0,
      ...buildEvalReport(summaries),
    };
    if (options.ppl) {
      const data = options.ppl.data ?? EVAL_DEFAULTS.pplData;
      const stream = await readTokensOfFile(data, "perplexity data", model.cfg.vocabSize, () => Promise.resolve(tokenizer));
      const ctx = options.ppl.ctx ?? model.cfg.maxPositions;
      const { events } = options;
      const p = await modelPerplexity(model, stream, {
        ctx,
        residency,
        pool,
        batchTokens: options.batchTokens,
        events: events && { next: (e) => events.next({ ...e, unit: "windows" }) },
      });
      const trainPath = options.ppl.train ?? EVAL_DEFAULTS.pplTrain;
      let unigram: NonNullable<EvalReport["ppl"]>["unigram"] = null;
      // The default counts are fixture-tokenizer ids: they go with the default data only.
      if (options.ppl.train !== undefined || (options.ppl.data === undefined && (await exists(trainPath)))) {
        const train = await readTokensOfFile(trainPath, "unigram training data", model.cfg.vocabSize, () => Promise.resolve(tokenizer));
        const u = unigramPerplexity(train, stream, model.cfg.vocabSize);
        unigram = { train: resolve(trainPath), nll: u.nll, ppl: u.ppl };
      } else if (!quiet && options.ppl.data === undefined) {
        console.error(`offtune eval: no "${trainPath}"; skipping the unigram reference`);
      }
      const bytes = predictedBytes(stream, tokenizer);
      report.ppl = { data: resolve(data), ctx, tokens: p.tokens, nll: p.nll, ppl: p.ppl, bytes, bpb: bitsPerByte(p, bytes), unigram };
    }
    report.seconds = (performance.now() - started) / 1000;
    return report;
  } finally {
    await pool?.close();
    await model.close();
  }
}
