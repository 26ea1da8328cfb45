/**
 * `offtune tune`: the data owner's step (docs/METHOD.md §1 step 2, §4). Tunes the
 * adapter blocks of an emulator package (or of an original checkpoint: the
 * "adapter tuned on the full model" variant) on a task's training items and
 * writes the adapter package (src/train/tune.ts). The package is rewritten
 * atomically after every epoch with the training state beside it, so
 * `--resume` continues an interrupted run; the finished package holds the
 * adapter alone. Ctrl-C or SIGTERM finishes the current step, checkpoints
 * and exits with 130 or 143 (a second signal exits at once).
 *
 * @module
 */
import process from "node:process";
import {
  checkOutputDir,
  goldExamples,
  initBackend,
  isPackage,
  openSource,
  padIdOf,
  partialDirOf,
  readTrainItems,
  removeStaleTemporaries,
  taskInputs,
  taskName,
  TUNE_DEFAULTS,
  tokenizerFor,
  tuneAdapter,
} from "../mod.ts";
import { withInterrupt } from "../src/cli/interrupt.ts";
import { createProgress, progressEvents } from "../src/cli/progress.ts";
import {
  HYPER_FLAGS,
  HYPER_HELP,
  hyperFromFlags,
  parseVerbFlags,
  positiveIntFlag,
  positiveNumberFlag,
  requireAtMost,
  splitFlag,
} from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune tune --emulator <dir> --task <name|file.jsonl> --out <dir> [flags]

Tunes the adapter blocks (bottom and top blocks of the split) on a task's
training items through the frozen middle blocks, and writes the adapter
package (Arrow shards + manifest) to --out. Each item trains as its context
followed by its gold choice, the loss on the choice's tokens only, encoded
as the multiple-choice scorer encodes it. The package and the training
state are rewritten atomically after every epoch; the finished package
holds the adapter alone (no optimizer state). Ctrl-C or SIGTERM finishes
the current step, checkpoints and exits (130 or 143); after that, or after
the process was killed, the same command with --resume continues from the
last checkpoint (docs/GUARANTEES.md).

--out must not exist, be empty, or hold an adapter package; anything else is
refused unless --force. When --out holds something (a finished adapter), the
run's checkpoints go beside it to <out>.partial and it is replaced only when
the new adapter is finished. An unfinished adapter (an epoch checkpoint) is
marked so in its manifest; eval and plug-in refuse it. --out may never be,
hold or lie inside an input (--emulator, the task file or tasks directory).

  --emulator <dir>       emulator package, or an original checkpoint (tunes
                         the adapter on the full model)
  --task <t>             task name (<tasks-dir>/<t>/train.jsonl) or a .jsonl
                         file of {context, choices, gold[, id]} items
  --out <dir>            adapter package directory
  --force                replace whatever --out holds once the new adapter is
                         finished; discard an unfinished run there
  --limit <n>            first n items only
${HYPER_HELP}
  --lora                 LoRA on the adapter blocks' linears instead of full
                         fine-tuning
  --lora-rank <n>        LoRA rank r, 1 to the layer width (default 8)
  --lora-alpha <x>       LoRA alpha > 0; scale alpha/r (default 16)
  --tune-embeddings      also tune embeddings, positions, final norm (and an
                         untied head), in full
  --split <b,t>          adapter blocks of an original checkpoint (default 2,2;
                         a package's split is its own)
  --tokenizer <file>     tokenizer.json (default: the model directory's, else
                         fixtures/tokenizer/tokenizer.json)
  --tasks-dir <dir>      where task names are looked up (default fixtures/data/tasks)
  --resume               continue the unfinished run in --out or <out>.partial
                         (repeat its flags)
  --workers <n>          threads computing each step's micro-batches: n - 1
                         worker threads and this one (default 1); the adapter
                         is the same bytes for any n (docs/DISTRIBUTED.md)
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress or summary`;

const FLAGS = {
  emulator: { type: "string" },
  task: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean", default: false },
  limit: { type: "string" },
  ...HYPER_FLAGS,
  lora: { type: "boolean", default: false },
  "lora-rank": { type: "string" },
  "lora-alpha": { type: "string" },
  "tune-embeddings": { type: "boolean", default: false },
  split: { type: "string" },
  tokenizer: { type: "string" },
  "tasks-dir": { type: "string" },
  resume: { type: "boolean", default: false },
  workers: { type: "string" },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

/** CLI entry: returns 0 when the adapter is finished, 130 or 143 when SIGINT or SIGTERM stopped it after a checkpoint. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "tune", ["emulator", "task", "out"]);
  const quiet = flags.quiet;
  const lora = flags.lora
    ? {
      rank: positiveIntFlag(flags["lora-rank"], "lora-rank") ?? 8,
      alpha: positiveNumberFlag(flags["lora-alpha"], "lora-alpha") ?? 16,
    }
    : undefined;
  if (!lora && (flags["lora-rank"] !== undefined || flags["lora-alpha"] !== undefined)) {
    throw new Error("--lora-rank and --lora-alpha need --lora");
  }
  const hyper = hyperFromFlags(flags, lora ? 1e-3 : TUNE_DEFAULTS.lr);
  const split = splitFlag(flags.split);
  const limit = positiveIntFlag(flags.limit, "limit");
  const workers = positiveIntFlag(flags.workers, "workers");
  if (split && (await isPackage(flags.emulator))) {
    throw new Error(`--split applies to checkpoints; "${flags.emulator}" is a package with its own split`);
  }
  await checkOutputDir({
    verb: "tune",
    flag: "out",
    path: flags.out,
    kind: { package: "adapter" },
    inputs: { emulator: flags.emulator, ...taskInputs(flags.task, flags["tasks-dir"]), tokenizer: flags.tokenizer },
    force: flags.force,
  });
  removeStaleTemporaries([flags.out, partialDirOf(flags.out)]);
  await initBackend(flags.backend, quiet);
  const items = await readTrainItems(flags.task, limit, flags["tasks-dir"]);
  const handle = await openSource(flags.emulator, split ? { split } : {});
  try {
    if (lora) { // the layer width: the smallest input or output size of a linear LoRA adapts
      const width = Math.min(...handle.arch.linears(handle.cfg).flatMap((l) => [l.inFeatures, l.outFeatures]));
      requireAtMost(lora.rank, width, "lora-rank", `the layer width of "${flags.emulator}"`);
    }
    const { tokenizer, path } = await tokenizerFor(flags.emulator, handle.cfg, flags.tokenizer, quiet);
    const examples = goldExamples(items, tokenizer);
    const progress = createProgress("tune", quiet);
    const started = performance.now();
    const { result: summary, exitCode } = await withInterrupt((interrupted) =>
      tuneAdapter(handle, {
        examples,
        padId: padIdOf(handle.cfg),
        out: flags.out,
        hyper,
        lora,
        tuneEmbeddings: flags["tune-embeddings"],
        resume: flags.resume,
        force: flags.force,
        describe: { task: taskName(flags.task), tokenizer: path },
        tokenizer: path,
        shouldStop: interrupted,
        events: progressEvents(progress),
        workers,
      })
    );
    progress.finish(`step ${summary.step}/${summary.total}`);
    if (!quiet) {
      const seconds = (performance.now() - started) / 1000;
      const losses = summary.epochLoss.map((l) => l.toFixed(4)).join(", ");
      console.error(
        `tune: ${summary.stopped ? "stopped at" : "finished"} step ${summary.step}/${summary.total}, ` +
          `${summary.parameters} trainable parameters, epoch losses [${losses}], ` +
          `${summary.examplesPerSecond.toFixed(1)} examples/s, ${seconds.toFixed(1)} s; ` +
          `${summary.stopped ? "checkpoint in" : "adapter in"} ${summary.dir}`,
      );
    }
    return summary.stopped ? exitCode : 0;
  } finally {
    await handle.close();
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith("pipelines/tune.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
