/**
 * `offtune full-ft`: the Full FT reference of docs/METHOD.md §1's table (§3: the
 * upper bound a plug-in model is measured against). Fine-tunes every block
 * of the original model (and optionally the embeddings) on a task's
 * training items with the loss, optimizer and schedule `offtune tune` uses
 * (src/train/tune.ts `tuneFullModel`), and writes a Hugging Face checkpoint.
 *
 * The training state is saved beside `--out` at every epoch
 * (src/train/full_ft_state.ts), so `--resume` continues a run that was
 * stopped by a signal or killed (docs/GUARANTEES.md "What resumes").
 *
 * @module
 */
import { rm, stat } from "node:fs/promises";
import process from "node:process";
import {
  checkOutputDir,
  fullTuneStatePath,
  goldExamples,
  initBackend,
  openModel,
  padIdOf,
  readTrainItems,
  removeStaleTemporaries,
  taskInputs,
  tf,
  tokenizerFor,
  tuneFullModel,
  writeHfModel,
} from "../mod.ts";
import { withInterrupt } from "../src/cli/interrupt.ts";
import { createProgress, progressEvents } from "../src/cli/progress.ts";
import { HYPER_FLAGS, HYPER_HELP, hyperFromFlags, parseVerbFlags, positiveIntFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune full-ft --model <dir> --task <name|file.jsonl> --out <dir> [flags]

Fine-tunes the whole original model (every block; embeddings with
--tune-embeddings) on a task's training items, with the loss and optimizer
of offtune tune (gold choice after its context, loss on the choice's tokens),
and writes the tuned model as a Hugging Face checkpoint to --out
(atomically). The Full FT reference of the offsite-tuning table. The
training state is saved to <out>.full-ft-state.safetensors after every
epoch; Ctrl-C or SIGTERM finishes the current step, saves it and exits
(130 or 143). After that, or after the process was killed, the same
command with --resume continues the run; the state file is removed once
the model is written.

--out must not exist, be empty, or hold a checkpoint written by offtune
full-ft; anything else is refused unless --force, which replaces it once the
new checkpoint is complete. --out may never be, hold or lie inside an input.

  --model <dir>          original checkpoint
  --task <t>             task name (<tasks-dir>/<t>/train.jsonl) or a .jsonl file
  --out <dir>            output checkpoint directory
  --force                replace whatever --out holds (atomically)
  --limit <n>            first n items only
${HYPER_HELP}
  --tune-embeddings      also tune embeddings, positions, final norm (and an
                         untied head)
  --tokenizer <file>     tokenizer.json (default: the model's own, else the
                         offtune default)
  --tasks-dir <dir>      where task names are looked up (default fixtures/data/tasks)
  --fp16                 store the weights as float16
  --resume               continue the run saved in <out>.full-ft-state.safetensors
                         (repeat its flags)
  --workers <n>          threads computing each step's micro-batches, as
                         offtune tune --workers (default 1; same weights for any n)
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress or summary`;

const FLAGS = {
  model: { type: "string" },
  task: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean", default: false },
  limit: { type: "string" },
  ...HYPER_FLAGS,
  "tune-embeddings": { type: "boolean", default: false },
  tokenizer: { type: "string" },
  "tasks-dir": { type: "string" },
  fp16: { type: "boolean", default: false },
  resume: { type: "boolean", default: false },
  workers: { type: "string" },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

const exists = (path: string) => stat(path).then(() => true, () => false);

/**
 * CLI entry: 0 when the model is written; 130 or 143 when SIGINT or SIGTERM
 * stopped training (the state saved for --resume, no model written).
 */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "full-ft", ["model", "task", "out"]);
  const quiet = flags.quiet;
  const hyper = hyperFromFlags(flags);
  const workers = positiveIntFlag(flags.workers, "workers");
  await checkOutputDir({
    verb: "full-ft",
    flag: "out",
    path: flags.out,
    kind: { marker: true },
    inputs: { model: flags.model, ...taskInputs(flags.task, flags["tasks-dir"]), tokenizer: flags.tokenizer },
    force: flags.force,
  });
  const checkpoint = fullTuneStatePath(flags.out);
  removeStaleTemporaries([flags.out, checkpoint]);
  const saved = await exists(checkpoint);
  if (flags.resume && !saved) throw new Error(`Cannot resume: "${checkpoint}" does not exist`);
  if (!flags.resume && saved) {
    throw new Error(`"${checkpoint}" holds an unfinished full-ft run; pass --resume to continue it or remove it`);
  }
  await initBackend(flags.backend, quiet);
  const items = await readTrainItems(flags.task, positiveIntFlag(flags.limit, "limit"), flags["tasks-dir"]);
  const handle = await openModel(flags.model, { split: { bottom: 0, top: 0 } }); // full FT: every block trains
  try {
    const { tokenizer, path } = await tokenizerFor(flags.model, handle.cfg, flags.tokenizer, quiet);
    const progress = createProgress("full-ft", quiet);
    const started = performance.now();
    const { result, exitCode } = await withInterrupt((interrupted) =>
      tuneFullModel(handle, {
        examples: goldExamples(items, tokenizer),
        padId: padIdOf(handle.cfg),
        hyper,
        tuneEmbeddings: flags["tune-embeddings"],
        shouldStop: interrupted,
        events: progressEvents(progress),
        checkpoint,
        resume: flags.resume,
        workers,
      })
    );
    try {
      progress.finish(`step ${result.step}/${result.total}`);
      if (result.stopped) {
        if (!quiet) console.error(`full-ft: stopped at step ${result.step}/${result.total}; state in ${checkpoint} (--resume continues)`);
        return exitCode;
      }
      await writeHfModel(flags.out, {
        model: { arch: handle.arch, cfg: handle.cfg, outer: result.outer },
        block: (i) => Promise.resolve(result.blocks[i]),
        tokenizer: path,
      }, { writtenBy: "full-ft", fp16: flags.fp16 });
      await rm(checkpoint, { force: true });
    } finally {
      tf.dispose([...result.outer.values(), ...result.blocks.flatMap((b) => [...b.values()])]);
    }
    if (!quiet) {
      const losses = result.epochLoss.map((l) => l.toFixed(4)).join(", ");
      console.error(
        `full-ft: ${result.parameters} parameters, epoch losses [${losses}], ` +
          `${result.examplesPerSecond.toFixed(1)} examples/s, ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
          `model in ${flags.out}`,
      );
    }
    return 0;
  } finally {
    await handle.close();
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith("full_ft.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
