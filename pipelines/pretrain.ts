/**
 * `offtune pretrain`: pretrain a small OPT language model from scratch, or
 * continue pretraining an existing checkpoint's weights with `--init` under a
 * new schedule, on a token stream, data-parallel over worker threads, and
 * write it in Hugging Face layout (`pretrain` of mod.ts; its module notes
 * describe the run directory). Ctrl-C or SIGTERM finishes the current step, saves a
 * checkpoint and exits with 130 or 143 (a second signal exits at once). A
 * run stopped so, or killed, continues with `--resume` from its last
 * checkpoint: a plain rerun refuses to start over a run (docs/GUARANTEES.md
 * "What resumes").
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { checkOutputDir, initBackend, PRETRAIN_STATE_FILE, pretrain } from "../mod.ts";
import { withInterrupt } from "../src/cli/interrupt.ts";
import { createProgress, progressEvents } from "../src/cli/progress.ts";
import { numberFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune pretrain --out <dir> [--init <model dir>] [flags]

Pretrains an OPT model from random initialisation (HF OPT init, std 0.02),
or from an existing checkpoint's weights with --init, on a Uint16 token
stream, data-parallel over worker threads: AdamW (β 0.9/0.95, decoupled
weight decay on matrices only), linear warmup + cosine decay, gradient
clipping at global norm 1. Writes config.json, model.safetensors,
the tokenizer, train_state.safetensors (for --resume) and log.jsonl to --out.
--out must not exist, be empty, or hold a pretraining run (resumed with
--resume); anything else is refused, and --out may never be, hold or lie
inside --init, --data, --tokenizer or --config.

Start (default: random initialisation from --seed):
  --init <dir>         start from the weights of this HF OPT checkpoint
                       (config.json + model.safetensors, F32, F16 or BF16,
                       e.g. fixtures/base): a new run with its own schedule,
                       fresh AdamW moments and step 0. The model is the
                       checkpoint's: model flags, if given, must agree with
                       its config.json, --ctx must fit its positions, and
                       --tokenizer (default: its tokenizer.json) must match
                       its vocabulary and special ids. A tensor missing,
                       surplus, misshapen or not finite is refused.
                       log.jsonl starts with a step-0 line: the checkpoint's
                       validation loss (and tracked losses), no training
                       fields. The run records the checkpoint's path and
                       content hash
Model (flags override --config; with --init they must agree with it):
  --config <file>      JSON with HF OPT keys (num_hidden_layers, hidden_size,
                       num_attention_heads, ffn_dim, max_position_embeddings,
                       vocab_size); keys offtune cannot honour are refused
  --layers <n>         blocks (default 12)
  --hidden <n>         width (default 256)
  --heads <n>          attention heads (default hidden/64)
  --ffn <n>            MLP width (default 4·hidden)
  --ctx <n>            training window = max positions (default 128; with
                       --init at most, and by default, its max positions)
Data:
  --data <dir>         holds train.bin and valid.bin (default fixtures/data/pretrain)
  --train <file>       the training token stream (default <data>/train.bin;
                       fixtures/base trains on <data>/train_large.bin)
  --tokenizer <file>   tokenizer.json (default fixtures/tokenizer/tokenizer.json;
                       with --init the checkpoint's own when it has one)
Training:
  --steps <n>          total optimizer steps; the schedule spans them (default 2000)
  --until <n>          stop and save after this step (default --steps)
  --batch <n>          windows per step (default 16)
  --lr <x>             peak learning rate (default 1e-3)
  --min-lr <x>         cosine floor (default lr/10)
  --warmup <n>         warmup steps (default min(100, steps/10))
  --weight-decay <x>   AdamW decoupled weight decay (default 0.1)
  --seed <n>           initialisation and sampling seed (default 0; with
                       --init, sampling only)
  --workers <n>        worker threads, 0 = this thread (default: cores)
  --micro-batch <n>    rows per forward/backward pass in a worker; bounds the
                       wasm heap (≈ 0.3 GiB per row at ctx 128, vocab 16k)
                       (default 4)
  --eval-every <n>     validation loss every n steps (default 100)
  --eval-windows <n>   validation windows of --ctx tokens (default 32)
  --save-every <n>     checkpoint every n steps (default 500; always at the end)
  --track-every <n>    every n steps (default steps/10; 0 = never) log the
                       validation loss of the model and of its half-middle
                       LayerDrop (2 + 2 adapter blocks, every other middle
                       block); plot-training draws both as perplexities.
                       Off for models with fewer than 2 middle blocks
  --fp16               store model.safetensors as F16 (train_state stays F32)
  --resume             continue the run in --out from train_state.safetensors,
                       bit-exactly unless --workers or --micro-batch change
                       (both default to the values last used); --steps,
                       --until, --data, --train (a later phase on a larger
                       stream), --fp16, --eval-every, --save-every and
                       --track-every may change too, other flags must repeat
                       the run's values (the model flags may be repeated, not
                       changed). A run started with --init continues from its
                       own state (--init need not be repeated; if it is, it
                       must be the same checkpoint by content hash, and it is
                       refused for a run started without it). A run stopped by
                       a signal or killed continues so; a plain rerun refuses
                       to start over it. A finished run resumed with --fp16
                       only rewrites its model as F16
  --quiet              no progress line or summary (progress is off in CI too)`;

const FLAGS = {
  init: { type: "string" },
  config: { type: "string" },
  layers: { type: "string" },
  hidden: { type: "string" },
  heads: { type: "string" },
  ffn: { type: "string" },
  ctx: { type: "string" },
  data: { type: "string" },
  train: { type: "string" },
  "track-every": { type: "string" },
  tokenizer: { type: "string" },
  out: { type: "string" },
  steps: { type: "string" },
  until: { type: "string" },
  batch: { type: "string" },
  lr: { type: "string" },
  "min-lr": { type: "string" },
  warmup: { type: "string" },
  "weight-decay": { type: "string" },
  seed: { type: "string" },
  workers: { type: "string" },
  "micro-batch": { type: "string" },
  "eval-every": { type: "string" },
  "eval-windows": { type: "string" },
  "save-every": { type: "string" },
  fp16: { type: "boolean" },
  resume: { type: "boolean" },
  quiet: { type: "boolean" },
} as const;

/** Runs `offtune pretrain` on `argv` (flags only) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseArgs({ args: argv, options: FLAGS, allowPositionals: false, strict: true }).values;
  if (!flags.out) throw new Error("--out <dir> is required");
  const n = (name: keyof typeof FLAGS) => numberFlag(flags[name] as string | undefined, name);
  const quiet = flags.quiet ?? false;
  const options = {
    out: flags.out,
    init: flags.init,
    config: flags.config,
    layers: n("layers"),
    hidden: n("hidden"),
    heads: n("heads"),
    ffn: n("ffn"),
    ctx: n("ctx"),
    data: flags.data,
    train: flags.train,
    trackEvery: n("track-every"),
    tokenizer: flags.tokenizer,
    steps: n("steps"),
    until: n("until"),
    batch: n("batch"),
    lr: n("lr"),
    minLr: n("min-lr"),
    warmup: n("warmup"),
    weightDecay: n("weight-decay"),
    seed: n("seed"),
    workers: n("workers"),
    microBatch: n("micro-batch"),
    evalEvery: n("eval-every"),
    evalWindows: n("eval-windows"),
    saveEvery: n("save-every"),
    fp16: flags.fp16,
    resume: flags.resume,
  };
  await checkOutputDir({
    verb: "pretrain",
    flag: "out",
    path: flags.out,
    kind: { holds: PRETRAIN_STATE_FILE, what: "a pretraining run (train_state.safetensors)" },
    inputs: { init: flags.init, data: flags.data, tokenizer: flags.tokenizer, config: flags.config },
  });
  await initBackend(undefined, quiet);
  const progress = createProgress("pretrain", quiet);
  const { result: { last, steps, out }, exitCode } = await withInterrupt((interrupted) =>
    pretrain({ ...options, shouldStop: interrupted, events: progressEvents(progress) })
  );
  progress.finish(last ? `step ${last.step}/${steps}` : "nothing to do");
  if (!quiet && last) {
    const val = last.val_loss === undefined ? "" : `, val loss ${last.val_loss.toFixed(4)}`;
    console.error(
      `pretrain: step ${last.step}/${steps}, loss ${last.loss.toFixed(4)}${val}, ` +
        `${Math.round(last.tokens_per_s)} tokens/s; saved to ${out}`,
    );
  }
  return exitCode;
}

if (import.meta.main ?? process.argv[1]?.endsWith("pretrain.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
