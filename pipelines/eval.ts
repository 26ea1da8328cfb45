/**
 * `offtune eval`: zero-shot multiple choice by log-likelihood and
 * perplexity on held-out text (docs/METHOD.md §5), for any artefact of §1: an
 * original checkpoint, an emulator package, either with a tuned adapter
 * (`evaluate` of mod.ts). Prints a table (acc and acc_norm with Wilson 95%
 * intervals, chance, a mark where the interval lies above chance, the task
 * average) and optionally writes the same as JSON.
 *
 * Tokenizer: `--tokenizer` when given, else `tokenizer.json` in the model
 * (or package) directory, else the fixture tokenizer the small models are
 * trained with (a notice says so; src/io/tokenizer_for.ts).
 *
 * @module
 */
import process from "node:process";
import {
  EVAL_DEFAULTS,
  evaluate,
  FIXTURE_TASKS,
  formatEvalReport,
  initBackend,
  listTasks,
  parseTaskSplit,
  removeStaleTemporaries,
  selectTasks,
  type StageEvents,
  writeFileAtomic,
} from "../mod.ts";
import { createProgress, progressEvents, type ProgressReporter } from "../src/cli/progress.ts";
import { parseVerbFlags, positiveIntFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune eval --model <dir> [flags]

Zero-shot multiple choice by log-likelihood (lm-eval-harness acc and
length-normalised acc_norm, docs/METHOD.md §5) on the tasks of --tasks-dir
(default the fixture tasks), and perplexity on held-out text. Intervals are Wilson 95%; "*" marks an
accuracy whose interval lies wholly above chance.

  --model <dir>          Hugging Face checkpoint or emulator package
  --adapter <dir>        tuned adapter package to apply first; an unfinished
                         one (an epoch checkpoint of offtune tune) is refused
  --allow-unfinished     apply an unfinished --adapter anyway
  --tasks <list>         all, or comma-separated names of tasks in --tasks-dir
                         (default all; the fixtures: ${FIXTURE_TASKS.join(", ")})
  --split <name>         test | validation | train (default test)
  --limit <n>            first n items of each task
  --ppl                  also perplexity on --ppl-data (and the unigram reference)
  --ppl-data <file>      held-out text: plain text or .jsonl of {"text": ...}
                         documents (tokenized with the model's tokenizer), or a
                         Uint16 token stream (.bin)
                         (default fixtures/data/pretrain/valid.bin: fixture-
                         tokenizer ids, refused for a model with another tokenizer)
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
  --workers <n>          threads scoring the batches: n - 1 worker threads and
                         this one, each holding the whole model (default 1;
                         not with --stream); the report is the same for any n
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
  workers: { type: "string" },
  json: { type: "string" },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "eval", ["model"]);
  removeStaleTemporaries(flags.json ? [flags.json] : []);
  const split = parseTaskSplit(flags.split);
  const limit = positiveIntFlag(flags.limit, "limit");
  const batchTokens = positiveIntFlag(flags["batch-tokens"], "batch-tokens");
  const ctx = positiveIntFlag(flags.ctx, "ctx");
  const workers = positiveIntFlag(flags.workers, "workers");
  if (workers !== undefined && workers > 1 && flags.stream) throw new Error("--workers above 1 holds the whole model in each thread: not with --stream");
  const quiet = flags.quiet;
  const tasksDir = flags["tasks-dir"] ?? EVAL_DEFAULTS.tasksDir;
  const tasks = selectTasks(flags.tasks, await listTasks(tasksDir), tasksDir);
  const backend = await initBackend(flags.backend, quiet);
  // one progress line for the multiple-choice requests, then one (timed from its first window) for perplexity
  const lines = new Map<string, { progress: ProgressReporter; draw: StageEvents }>();
  const line = (unit: string) => {
    if (!lines.has(unit)) {
      const progress = createProgress(unit === "requests" ? "eval" : "perplexity", quiet);
      lines.set(unit, { progress, draw: progressEvents(progress) });
    }
    return lines.get(unit)!;
  };
  const report = await evaluate({
    model: flags.model,
    adapter: flags.adapter,
    allowUnfinished: flags["allow-unfinished"],
    tasks,
    tasksDir,
    split,
    limit,
    bos: !flags["no-bos"],
    residency: flags.stream ? "streaming" : "resident",
    batchTokens,
    workers,
    tokenizer: flags.tokenizer,
    ppl: flags.ppl ? { data: flags["ppl-data"], train: flags["ppl-train"], ctx } : undefined,
    quiet,
    events: {
      next(e) {
        const { progress, draw } = line(e.unit ?? "");
        draw.next(e);
        if (e.done === e.total) progress.finish(`${e.total} ${e.unit}`);
      },
    },
  });
  console.log(formatEvalReport(report));
  if (!quiet) console.error(`offtune eval: ${report.seconds.toFixed(1)} s (${backend})`);
  if (flags.json) {
    await writeFileAtomic(flags.json, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  }
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("eval.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
