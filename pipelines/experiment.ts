/**
 * `offtune experiment`: the whole offsite-tuning loop for one method (GradOT,
 * or a baseline of docs/METHOD.md §3: OT LayerDrop, CRaSh, ScaleOT) over tasks × seeds, each step
 * in its own process, writing `<runs>/<label>/seed-<n>/result.json` for
 * `offtune report` (`runExperiment` of mod.ts; its module notes list the
 * steps).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type ExperimentOptions, experimentOptions as withDefaults, runExperiment } from "../mod.ts";
import { countFlag, fractionBelowOneFlag, fractionFlag, nonNegativeFlag, positiveIntFlag, positiveNumberFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune experiment --model <checkpoint> --runs <dir> [flags]

Runs the offsite-tuning loop for one method on --model: builds the emulator,
tunes an adapter per task and seed through it, and evaluates Full ZS,
Emulator ZS, Emulator FT, Plug-in and Full FT, writing
<runs>/<label>/seed-<n>/result.json for offtune report.

  --model <dir>          original checkpoint (with tokenizer.json)
  --runs <dir>           runs directory (results); work files go to <runs>/_work.
                         It must not exist, be empty, or be a runs directory
                         (with _work); nor be, hold or lie inside --model or
                         --calibration
  --method <m>           gradot | layerdrop (the OT† LayerDrop baseline; its
                         results say method "ot-layerdrop") | crash (the
                         CRaSh baseline, method "crash") | scaleot (ScaleOT,
                         method "scaleot") (default gradot)
  --tasks <list>         comma-separated names of tasks in --tasks-dir (default: all)
  --tasks-dir <dir>      tasks: one directory per task with train.jsonl and
                         test.jsonl (default fixtures/data/tasks)
  --seeds <list>         tuning seeds (default 0,1,2)
  --label <name>         row label (default <method>-r<ratio>, e.g. crash-r0.5)
  --ratio <x>            emulator ratio (default 0.5)
  --lambda-attn <x>      GCS λ for attention (default: GradOT's; gradot only)
  --lambda-mlp <x>       GCS λ for the MLP (default: GradOT's; gradot only)
  --replace-fraction <x> α in [0, 1) (default: from --ratio; scaleot only)
  --rank-reduction <x>   β in [0, 1) (default: ScaleOT's; scaleot only)
  --importance <e>       cheap | rl (default cheap; scaleot only)
  --episodes <n>         REINFORCE episodes of --importance rl (scaleot only)
                         (these four as build-emulator --help describes them)
  --calibration <file>   calibration text (plain text or .jsonl of {"text": ...},
                         tokenized with the model's tokenizer) or token stream
                         (default fixtures/data/pretrain/calibration.bin; gradot,
                         crash and scaleot)
  --ppl-data <file>      held-out text for the perplexities, as eval --ppl-data
                         (default fixtures/data/pretrain/valid.bin)
                         Both defaults are fixture-tokenizer ids: a model with
                         another tokenizer.json needs its own text for both.
  --sequences <n>        calibration sequences (default 64; gradot, crash and scaleot)
  --train-limit <n>      training items per task (default: all)
  --eval-limit <n>       test items per task (default: all)
  --epochs <n>           tuning epochs (default 2)
  --lr <x>               tuning learning rate (default: offtune tune's)
  --no-full-ft           skip the Full FT reference (reported as null)
  --jobs <n>             steps run at once, one process each (default: the cores)
  --metric <m>           acc | acc_norm (default acc)
  --quiet                no progress`;

const FLAGS = {
  model: { type: "string" },
  runs: { type: "string" },
  method: { type: "string" },
  tasks: { type: "string" },
  "tasks-dir": { type: "string" },
  "ppl-data": { type: "string" },
  seeds: { type: "string" },
  label: { type: "string" },
  ratio: { type: "string" },
  "lambda-attn": { type: "string" },
  "lambda-mlp": { type: "string" },
  "replace-fraction": { type: "string" },
  "rank-reduction": { type: "string" },
  importance: { type: "string" },
  episodes: { type: "string" },
  calibration: { type: "string" },
  sequences: { type: "string" },
  "train-limit": { type: "string" },
  "eval-limit": { type: "string" },
  epochs: { type: "string" },
  lr: { type: "string" },
  "no-full-ft": { type: "boolean", default: false },
  jobs: { type: "string" },
  metric: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

/**
 * Parses and checks the experiment flags (the task names against the tasks
 * directory, the input files), before any work (defaults:
 * `EXPERIMENT_DEFAULTS` of mod.ts).
 */
export async function experimentOptions(argv: string[]): Promise<ExperimentOptions> {
  const f = parseArgs({ args: argv, options: FLAGS, strict: true }).values;
  if (!f.model || !f.runs) throw new Error("--model and --runs are required (see offtune experiment --help)");
  const stray = (["replace-fraction", "rank-reduction", "importance", "episodes"] as const).find((k) => f[k] !== undefined);
  if (stray && f.method !== "scaleot") throw new Error(`--${stray} applies to --method scaleot only, not ${f.method ?? "gradot"}`);
  return await withDefaults({
    model: f.model,
    runs: f.runs,
    method: f.method as ExperimentOptions["method"] | undefined,
    tasks: f.tasks === undefined || f.tasks.trim() === "all" ? undefined : f.tasks.split(","),
    tasksDir: f["tasks-dir"],
    seeds: f.seeds?.split(",").map((s) => countFlag(s, "seeds")!),
    label: f.label,
    ratio: fractionFlag(f.ratio, "ratio"),
    lambdaAttn: nonNegativeFlag(f["lambda-attn"], "lambda-attn"),
    lambdaMlp: nonNegativeFlag(f["lambda-mlp"], "lambda-mlp"),
    replaceFraction: fractionBelowOneFlag(f["replace-fraction"], "replace-fraction"),
    rankReduction: fractionBelowOneFlag(f["rank-reduction"], "rank-reduction"),
    importance: f.importance as ExperimentOptions["importance"] | undefined,
    episodes: positiveIntFlag(f.episodes, "episodes"),
    calibration: f.calibration,
    pplData: f["ppl-data"],
    sequences: positiveIntFlag(f.sequences, "sequences"),
    trainLimit: positiveIntFlag(f["train-limit"], "train-limit"),
    evalLimit: positiveIntFlag(f["eval-limit"], "eval-limit"),
    epochs: positiveIntFlag(f.epochs, "epochs"),
    lr: positiveNumberFlag(f.lr, "lr"),
    fullFt: !f["no-full-ft"],
    jobs: positiveIntFlag(f.jobs, "jobs"),
    metric: f.metric as ExperimentOptions["metric"] | undefined,
    quiet: f.quiet,
  });
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const paths = await runExperiment(await experimentOptions(argv));
  for (const p of paths) console.log(`wrote ${p}`);
  return 0;
}
