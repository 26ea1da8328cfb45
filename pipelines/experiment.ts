/**
 * `offtune experiment`: the whole offsite-tuning loop for one method (GradOT,
 * or a baseline of docs/METHOD.md §3: OT LayerDrop, CRaSh, OT distilled, ScaleOT) over tasks × seeds, each step
 * in its own process, writing `<runs>/<label>/seed-<n>/result.json` for
 * `offtune report` (`runExperiment` of mod.ts; its module notes list the
 * steps).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type ExperimentOptions, experimentOptions as withDefaults, runExperiment } from "../mod.ts";
import {
  countFlag,
  DISTILL_FLAGS,
  DISTILL_HELP,
  distillFromFlags,
  fractionFlag,
  nonNegativeFlag,
  positiveIntFlag,
  positiveNumberFlag,
  SCALEOT_FLAGS,
  scaleotFromFlags,
  splitFlag,
} from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune experiment --model <checkpoint> --runs <dir> [flags]

Runs the offsite-tuning loop for one method on --model: builds the emulator
(one per ratio of --ratios, each build timed), tunes an adapter per task and
seed through it, and evaluates Full ZS, Emulator ZS, Emulator FT, Plug-in and
Full FT, writing <runs>/<label>/seed-<n>/result.json for offtune report. Full
ZS and Full FT run once for all ratios. Run again, a ratio and seed whose
result.json exists is kept, not redone (it must have this run's settings).

  --model <dir>          original checkpoint (with tokenizer.json)
  --runs <dir>           runs directory (results); work files go to <runs>/_work.
                         It must not exist, be empty, or be a runs directory
                         (with _work); nor be, hold or lie inside --model or
                         --calibration
  --method <m>           gradot | layerdrop (the OT† LayerDrop baseline; its
                         results say method "ot-layerdrop") | crash (the
                         CRaSh baseline, method "crash") | ot-distill (the
                         OT baseline with distillation, method "ot-distill") |
                         scaleot (ScaleOT, method "scaleot") (default gradot)
  --tasks <list>         comma-separated names of tasks in --tasks-dir (default: all)
  --tasks-dir <dir>      tasks: one directory per task with train.jsonl and
                         test.jsonl (default fixtures/data/tasks)
  --seeds <list>         tuning seeds (default 0,1,2)
  --label <name>         row label (default <method>-r<ratio>, e.g. crash-r0.5;
                         GradOT's ablations are named in it: gradot-mag-r0.5,
                         gradot-drd-r0.7, gradot-scp-r0.5, gradot-l1000-r0.5);
                         with several --ratios, the rows' prefix: <name>-r<ratio>
  --ratio <x>            emulator ratio (default 0.5)
  --ratios <list>        comma-separated emulator ratios, e.g. 0.3,0.5,0.7: one
                         emulator and one row each (not with --ratio)
  --split <b,t>          adapter blocks at bottom,top, as build-emulator
                         (default 2,2)
  --lambda-attn <x>      GCS λ for attention (default: GradOT's; gradot only)
  --lambda-mlp <x>       GCS λ for the MLP (default: GradOT's; gradot only)
  --lambda <x>           one GCS λ for both (not with --lambda-attn or
                         --lambda-mlp; gradot only)
  --selection <s>        gcs | magnitude (default gcs; gradot only): magnitude
                         keeps the top singular values and the largest-norm
                         channels at the same budget
  --only <part>          drd | scp: compress attention only or the MLP only,
                         at the same total ratio (gradot only; see
                         offtune build-emulator --help)
  --replace-fraction <x> α in [0, 1) (default: from --ratio; scaleot only)
  --rank-reduction <x>   β in [0, 1) (default: ScaleOT's; scaleot only)
  --importance <e>       cheap | rl (default cheap; scaleot only)
  --episodes <n>         REINFORCE episodes of --importance rl (scaleot only)
                         (these four as build-emulator --help describes them)
  --calibration <file>   calibration text (plain text or .jsonl of {"text": ...},
                         tokenized with the model's tokenizer) or token stream
                         (default fixtures/data/pretrain/calibration.bin; gradot,
                         crash, ot-distill and scaleot)
  --ppl-data <file>      held-out text for the perplexities, as eval --ppl-data
                         (default fixtures/data/pretrain/valid.bin)
                         Both defaults are fixture-tokenizer ids: a model with
                         another tokenizer.json needs its own text for both.
  --sequences <n>        calibration sequences (default 64; gradot, crash,
                         ot-distill, scaleot)
  --train-limit <n>      training items per task (default: all)
  --eval-limit <n>       test items per task (default: all)
  --epochs <n>           tuning epochs (default 2)
  --lr <x>               tuning learning rate (default: offtune tune's)
  --no-full-ft           skip the Full FT reference (reported as null)
  --jobs <n>             steps run at once, one process each (default: the cores)
  --workers <n>          threads of each step: GradOT emulator builds, eval,
                         tune and full-ft (their --workers; default 1, as
                         --jobs already runs steps side by side); same bytes
                         for any n
  --metric <m>           acc | acc_norm (default acc)
  --queue <url>          run the steps as jobs of this Redis queue
                         (redis://host:port) on offtune workers, on any
                         machines that see --model, --runs and the tasks at
                         the same paths; --jobs then bounds the steps
                         submitted at once (docs/DISTRIBUTED.md)
  --quiet                no progress

${DISTILL_HELP}`;

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
  ratios: { type: "string" },
  split: { type: "string" },
  "lambda-attn": { type: "string" },
  "lambda-mlp": { type: "string" },
  lambda: { type: "string" },
  selection: { type: "string" },
  only: { type: "string" },
  ...SCALEOT_FLAGS,
  calibration: { type: "string" },
  sequences: { type: "string" },
  "train-limit": { type: "string" },
  "eval-limit": { type: "string" },
  epochs: { type: "string" },
  lr: { type: "string" },
  "no-full-ft": { type: "boolean", default: false },
  jobs: { type: "string" },
  workers: { type: "string" },
  metric: { type: "string" },
  queue: { type: "string" },
  quiet: { type: "boolean", default: false },
  ...DISTILL_FLAGS,
} as const;

/**
 * Parses and checks the experiment flags (the task names against the tasks
 * directory, the input files), before any work (defaults:
 * `EXPERIMENT_DEFAULTS` of mod.ts).
 */
export async function experimentOptions(argv: string[]): Promise<ExperimentOptions> {
  const f = parseArgs({ args: argv, options: FLAGS, strict: true }).values;
  if (!f.model || !f.runs) throw new Error("--model and --runs are required (see offtune experiment --help)");
  if (f.ratio !== undefined && f.ratios !== undefined) {
    throw new Error("--ratio and --ratios: give one (--ratio <x> is --ratios <x>; see offtune experiment --help)");
  }
  const scaleot = scaleotFromFlags(f, f.method ?? "gradot");
  return await withDefaults({
    model: f.model,
    runs: f.runs,
    method: f.method as ExperimentOptions["method"] | undefined,
    tasks: f.tasks === undefined || f.tasks.trim() === "all" ? undefined : f.tasks.split(","),
    tasksDir: f["tasks-dir"],
    seeds: f.seeds?.split(",").map((s) => countFlag(s, "seeds")!),
    label: f.label,
    ratios: f.ratio !== undefined
      ? [fractionFlag(f.ratio, "ratio")!]
      : f.ratios?.split(",").map((r) => fractionFlag(r.trim(), "ratios")!),
    split: splitFlag(f.split),
    lambdaAttn: nonNegativeFlag(f["lambda-attn"], "lambda-attn"),
    lambdaMlp: nonNegativeFlag(f["lambda-mlp"], "lambda-mlp"),
    distill: distillFromFlags(f),
    lambda: nonNegativeFlag(f.lambda, "lambda"),
    selection: f.selection as ExperimentOptions["selection"],
    only: f.only as ExperimentOptions["only"],
    ...scaleot,
    calibration: f.calibration,
    pplData: f["ppl-data"],
    sequences: positiveIntFlag(f.sequences, "sequences"),
    trainLimit: positiveIntFlag(f["train-limit"], "train-limit"),
    evalLimit: positiveIntFlag(f["eval-limit"], "eval-limit"),
    epochs: positiveIntFlag(f.epochs, "epochs"),
    lr: positiveNumberFlag(f.lr, "lr"),
    fullFt: !f["no-full-ft"],
    jobs: positiveIntFlag(f.jobs, "jobs"),
    workers: positiveIntFlag(f.workers, "workers"),
    metric: f.metric as ExperimentOptions["metric"] | undefined,
    quiet: f.quiet,
    queue: f.queue,
  });
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const paths = await runExperiment(await experimentOptions(argv));
  for (const p of paths) console.log(`wrote ${p}`);
  return 0;
}
