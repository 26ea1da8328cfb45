/**
 * `offtune eval`: zero-shot multiple choice by log-likelihood and
 * perplexity on held-out text (docs/METHOD.md §5), for any artefact of §1: an
 * original checkpoint, an emulator package, either with a tuned adapter.
 * Prints a table (acc and acc_norm with Wilson 95% intervals, chance, a mark
 * where the interval lies above chance, the task average) and optionally
 * writes the same as JSON.
 *
 * Tokenizer: `--tokenizer` when given, else `tokenizer.json` in the model
 * (or package) directory, else the fixture tokenizer the small models are
 * trained with (a notice says so; pipelines/tokenizer_for.ts).
 *
 * @module
 */
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createProgress } from "../src/cli/progress.ts";
import { readTokensOfFile } from "../src/data/text_tokens.ts";
import { TASKS } from "../src/data/tasks/registry.ts";
import type { McItem, TaskSplit } from "../src/data/tasks/types.ts";
import { type McSummary, scoreMultipleChoice, summarizeMultipleChoice } from "../src/eval/multiple_choice.ts";
import type { Residency } from "../src/eval/loglikelihood.ts";
import { modelPerplexity, type Perplexity, unigramPerplexity } from "../src/eval/perplexity.ts";
import { aboveChance, type AccuracyStats, averageStats } from "../src/eval/stats.ts";
import { listTasks, readTaskItems } from "../src/eval/task_file.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { MANIFEST_FILE, readManifest } from "../src/io/manifest.ts";
import { openSource, withAdapter } from "../src/operators/model_source.ts";
import type { AdapterSplit, ModelHandle } from "../src/records/records.ts";
import { initBackend } from "../src/tensor/backend.ts";
import { removeStaleTemporaries } from "../src/io/stale_temps.ts";
import { requireFinishedAdapter } from "../src/train/tune_package.ts";
import { parseVerbFlags, positiveIntFlag } from "./flags.ts";
import { tokenizerFor } from "./tokenizer_for.ts";

const fixture = (path: string) => fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));

/** Where the verb looks for data unless told otherwise. */
export const EVAL_DEFAULTS = {
  tasksDir: fixture("data/tasks"),
  pplData: fixture("data/pretrain/valid.bin"),
  pplTrain: fixture("data/pretrain/train.bin"),
};

/** Help text for the verb. */
export const help = `offtune eval --model <dir> [flags]

Zero-shot multiple choice by log-likelihood (lm-eval-harness acc and
length-normalised acc_norm, docs/METHOD.md §5) on the fixture tasks, and
perplexity on held-out text. Intervals are Wilson 95%; "*" marks an
accuracy whose interval lies wholly above chance.

  --model <dir>          Hugging Face checkpoint or emulator package
  --adapter <dir>        tuned adapter package to apply first; an unfinished
                         one (an epoch checkpoint of offtune tune) is refused
  --allow-unfinished     apply an unfinished --adapter anyway
  --tasks <list>         all, or comma-separated names of tasks in --tasks-dir
                         (default all; the fixtures: ${TASKS.map((t) => t.name).join(", ")})
  --split <name>         test | validation | train (default test)
  --limit <n>            first n items of each task
  --ppl                  also perplexity on --ppl-data (and the unigram reference)
  --ppl-data <file>      held-out text: plain text or .jsonl of {"text": ...}
                         documents (tokenized with the model's tokenizer), or a
                         Uint16 token stream (.bin)
                         (default fixtures/data/pretrain/valid.bin)
  --ppl-train <file>     text or stream for the add-one unigram reference (default
                         fixtures/data/pretrain/train.bin with the default
                         --ppl-data; else none unless given)
  --ctx <n>              perplexity window (default: the model's max positions)
  --tokenizer <file>     tokenizer.json (default: the model's, else the fixture one)
  --tasks-dir <dir>      tasks: one directory per task holding <split>.jsonl
                         files of {context, choices, gold[, id]} lines
                         (default fixtures/data/tasks)
  --no-bos               do not put the BOS token before each context
  --stream               one block resident at a time (for models larger than memory)
  --batch-tokens <n>     rows x padded length per forward batch (default 2048)
  --json <file>          write the results as JSON (atomically)
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress, no notices`;

const FLAGS = {
  model: { type: "string" },
  adapter: { type: "string" },
  "allow-unfinished": { type: "boolean", default: false },
  tasks: { type: "string", default: "all" },
  split: { type: "string", default: "test" },
  limit: { type: "string" },
  ppl: { type: "boolean", default: false },
  "ppl-data": { type: "string" },
  "ppl-train": { type: "string" },
  ctx: { type: "string" },
  tokenizer: { type: "string" },
  "tasks-dir": { type: "string" },
  "no-bos": { type: "boolean", default: false },
  stream: { type: "boolean", default: false },
  "batch-tokens": { type: "string" },
  json: { type: "string" },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

const SPLITS: readonly TaskSplit[] = ["test", "validation", "train"];


/** `names` in report order: the fixture tasks in their registry order, then any others by name. */
function reportOrder(names: readonly string[]): string[] {
  const known = TASKS.map((t) => t.name);
  const rank = (name: string) => (known.includes(name) ? known.indexOf(name) : known.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The task names `--tasks` selects among `available` (the tasks of the tasks
 * directory `tasksDir`, see `listTasks`), in report order.
 *
 * @throws Error naming the directory for a name that is not a task there
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
 * Opens the model, with the adapter's split when an adapter is applied (the
 * split matters to nothing else here). An unfinished adapter is refused
 * before the model is opened, unless `allowUnfinished`.
 */
async function openForEval(modelDir: string, adapterDir: string | undefined, allowUnfinished: boolean): Promise<ModelHandle> {
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

/** JSON form of one accuracy pair (stable keys, lm-eval names). */
function accuracyJson(acc: AccuracyStats, accNorm: AccuracyStats, chance: number) {
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

/** The verb's results, as written by `--json`. */
export interface EvalReport {
  model: string;
  adapter: string | null;
  split: TaskSplit;
  limit: number | null;
  bos: boolean;
  backend: string;
  seconds: number;
  tasks: Record<string, { n: number } & ReturnType<typeof accuracyJson>>;
  average: ({ tasks: number } & ReturnType<typeof accuracyJson>) | null;
  ppl?: {
    data: string;
    ctx: number;
    tokens: number;
    nll: number;
    ppl: number;
    unigram: { train: string; nll: number; ppl: number } | null;
  };
}

/** The report of scored tasks (and perplexity), without the run's metadata. */
export function buildReport(
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

/** The printed table of a report. */
export function formatReport(report: Pick<EvalReport, "tasks" | "average" | "ppl">): string {
  type Row = { name: string; n: string; scores: ReturnType<typeof accuracyJson> };
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
    lines.push("", `perplexity ${p.ppl.toFixed(2)} (NLL ${p.nll.toFixed(4)} nats/token, ${p.tokens} tokens, window ${p.ctx}) on ${p.data}`);
    if (p.unigram) lines.push(`unigram reference ${p.unigram.ppl.toFixed(2)} (NLL ${p.unigram.nll.toFixed(4)}, add-one, counts from ${p.unigram.train})`);
  }
  return lines.join("\n");
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "eval", ["model"]);
  removeStaleTemporaries(flags.json ? [flags.json] : []);
  const split = flags.split as TaskSplit;
  if (!SPLITS.includes(split)) throw new Error(`--split expects one of ${SPLITS.join(", ")}, got "${flags.split}"`);
  const limit = positiveIntFlag(flags.limit, "limit");
  const batchTokens = positiveIntFlag(flags["batch-tokens"], "batch-tokens");
  const ctxFlag = positiveIntFlag(flags.ctx, "ctx");
  const residency: Residency = flags.stream ? "streaming" : "resident";
  const bos = !flags["no-bos"];
  const quiet = flags.quiet;
  const tasksDir = flags["tasks-dir"] ?? EVAL_DEFAULTS.tasksDir;
  const tasks = selectTasks(flags.tasks, await listTasks(tasksDir), tasksDir);

  const backend = await initBackend(flags.backend, quiet);
  const started = performance.now();
  const itemsByTask = new Map<string, McItem[]>();
  for (const name of tasks) itemsByTask.set(name, await readTaskItems(tasksDir, name, split, limit));
  const model = await openForEval(flags.model, flags.adapter, flags["allow-unfinished"]);
  try {
    const { tokenizer } = await tokenizerFor(flags.model, model.cfg, flags.tokenizer, quiet);
    const allItems = [...itemsByTask.values()].flat();
    const progress = createProgress("eval", quiet);
    const results = await scoreMultipleChoice(model, tokenizer, allItems, {
      bos,
      residency,
      batchTokens,
      padId: tokenizer.padId,
      onProgress: (done, total, tokens) => progress.update({ done, total, unit: "requests", tokens }),
    });
    progress.finish(`${allItems.length} items`);
    const summaries = new Map<string, McSummary>();
    let at = 0;
    for (const [name, items] of itemsByTask) {
      summaries.set(name, summarizeMultipleChoice(results.slice(at, at + items.length)));
      at += items.length;
    }
    const report: EvalReport = {
      model: resolve(flags.model),
      adapter: flags.adapter === undefined ? null : resolve(flags.adapter),
      split,
      limit: limit ?? null,
      bos,
      backend,
      seconds: 0,
      ...buildReport(summaries),
    };

    if (flags.ppl) {
      const data = flags["ppl-data"] ?? EVAL_DEFAULTS.pplData;
      const stream = await readTokensOfFile(data, "perplexity data", model.cfg.vocabSize, () => Promise.resolve(tokenizer));
      const ctx = ctxFlag ?? model.cfg.maxPositions;
      const pplProgress = createProgress("perplexity", quiet);
      const p: Perplexity = await modelPerplexity(model, stream, {
        ctx,
        residency,
        batchTokens,
        onProgress: (done, total, tokens) => pplProgress.update({ done, total, unit: "windows", tokens }),
      });
      pplProgress.finish(`${p.tokens} tokens`);
      const trainPath = flags["ppl-train"] ?? EVAL_DEFAULTS.pplTrain;
      let unigram: NonNullable<EvalReport["ppl"]>["unigram"] = null;
      // The default counts are fixture-tokenizer ids: they go with the default data only.
      if (flags["ppl-train"] !== undefined || (flags["ppl-data"] === undefined && (await exists(trainPath)))) {
        const train = await readTokensOfFile(trainPath, "unigram training data", model.cfg.vocabSize, () => Promise.resolve(tokenizer));
        const u = unigramPerplexity(train, stream, model.cfg.vocabSize);
        unigram = { train: resolve(trainPath), nll: u.nll, ppl: u.ppl };
      } else if (!quiet && flags["ppl-data"] === undefined) {
        console.error(`offtune eval: no "${trainPath}"; skipping the unigram reference`);
      }
      report.ppl = { data: resolve(data), ctx, tokens: p.tokens, nll: p.nll, ppl: p.ppl, unigram };
    }
    report.seconds = (performance.now() - started) / 1000;
    console.log(formatReport(report));
    if (!quiet) console.error(`offtune eval: ${report.seconds.toFixed(1)} s (${backend})`);
    if (flags.json) {
      await writeFileAtomic(flags.json, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
    }
    return 0;
  } finally {
    await model.close();
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith("eval.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
