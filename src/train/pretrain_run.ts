/**
 * Pretraining runs (`offtune pretrain`): pretrain a small OPT language model
 * on a token stream, data-parallel over worker threads, and write it in
 * Hugging Face layout (the model the offsite-tuning experiments start from,
 * docs/METHOD.md §1: "a pretrained decoder LM").
 *
 * A run starts in one of three ways:
 * - from random initialisation (HF OPT init, `seed`);
 * - from the weights of an existing OPT checkpoint (`init`, any HF-layout
 *   directory such as fixtures/base): a new run with its own schedule, fresh
 *   AdamW moments and step 0, whose model (shape, vocabulary, positions) is
 *   the checkpoint's; the model options, when given, must agree with its
 *   config.json (src/train/init_checkpoint.ts reads it);
 * - by `resume`, continuing a run in `out` from its train state.
 *
 * The output directory holds, each file written under a temporary name and
 * renamed:
 * - `config.json`, `model.safetensors`: the model as HF's `OPTForCausalLM`
 *   reads it (F32, or F16 with `--fp16`), rewritten at every checkpoint;
 * - `tokenizer.json` (and `tokenizer_config.json` when one sits beside it),
 *   copied at the start;
 * - `train_state.safetensors`: float32 parameters and AdamW moments
 *   (`param/<name>`, `exp_avg/<name>`, `exp_avg_sq/<name>`), with the step,
 *   token count, sampler PRNG word and the run's options as JSON in the
 *   `__metadata__` key `offtune.train_state`. `--resume` continues from it
 *   bit-exactly (with the worker count and micro-batch last used, its
 *   defaults: the order of the gradient sums follows them). The options
 *   include, for a run started with `init`, the checkpoint's path and content
 *   hash (`ModelHandle.sourceHash`): a resume that repeats `init` must name
 *   a checkpoint with that hash;
 * - `log.jsonl`: one line per step: step, tokens, loss, lr, grad_norm,
 *   val_loss (null between evaluations), tokens_per_s, seconds. A run
 *   started with `init` begins with a step-0 line, written with its step-0
 *   checkpoint: the validation loss of the checkpoint's weights (and the
 *   tracked losses when tracking is on) with null training fields, so its
 *   curve starts where the checkpoint left off.
 *
 * A caller's `shouldStop` (the CLI: SIGINT or SIGTERM) finishes the current
 * step, saves a checkpoint and returns. A run stopped so, or killed,
 * continues with `resume` from its last checkpoint: a fresh start refuses to
 * start over a run (docs/GUARANTEES.md "What resumes"). A fresh run's
 * directory is created atomically with a step-0 checkpoint, so a kill at
 * any point leaves no run or one that `resume` continues.
 *
 * @module
 */
import { copyFile, readFile, rename, stat, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import type { StageEvents } from "../events/stage_events.ts";
import { createDirectoryTransaction, siblingName, writeFileAtomic } from "../io/atomic.ts";
import { removeStaleTemporaries } from "../io/stale_temps.ts";
import { saveCheckpoint } from "../io/checkpoint.ts";
import { CheckpointError } from "../io/errors.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { tokenizerFor } from "../io/tokenizer_for.ts";
import { toHfTensors } from "../model/load.ts";
import { tf } from "../tensor/backend.ts";
import { AdamW } from "./adamw.ts";
import { type TokenBatch, validationWindows, WindowSampler } from "./batches.ts";
import { type GradientEngine, inProcessEngine, startDataParallel } from "./data_parallel.ts";
import { batchLoss, type TrainModel, trainModel } from "./gradients.ts";
import { layerDropBlocks } from "../operators/layer_drop.ts";
import { DEFAULT_SPLIT } from "../model/model_handle.ts";
import { initOptParams } from "./init.ts";
import { checkpointParams, openInitCheckpoint } from "./init_checkpoint.ts";
import { optConfigJson, type OptHyperParameters } from "./opt_config.ts";
import { optimizerParams, weightsFromFlat } from "./params.ts";
import { validateSchedule } from "./schedule.ts";
import { readStateFile, type StateFormat, writeStateFile } from "./state_file.ts";
import { type StepRecord, train, type TrainState } from "./trainer.ts";

/** The run's resumable state file in its directory (what marks a directory as a pretraining run). */
export const PRETRAIN_STATE_FILE = "train_state.safetensors";
const LOG_FILE = "log.jsonl";
const STATE: StateFormat = { key: "offtune.train_state", format: "offtune-train-state", version: 1 };
/** Sampling uses its own PRNG stream, so init and batches do not share draws. */
const SAMPLER_SEED_MIX = 0x9e3779b9;

/** The checkpoint a run started from (`--init`), as its saved options record it. */
interface InitSource {
  /** The checkpoint directory, resolved. */
  path: string;
  /** Its content hash (`ModelHandle.sourceHash`: SHA-256 of config.json and the weight files). */
  sourceHash: string;
}

/** Options that define a run; fixed once it starts (resume checks them). */
interface RunOptions {
  /** The checkpoint whose weights started the run; absent for a run from random initialisation. */
  init?: InitSource;
  data: string;
  /** The training token stream; `<data>/train.bin` unless `--train` names another (runs before it had none). */
  train?: string;
  tokenizer: string;
  batch: number;
  ctx: number;
  lr: number;
  minLr: number;
  warmup: number;
  steps: number;
  seed: number;
  weightDecay: number;
  evalWindows: number;
  fp16: boolean;
  /** Worker threads and rows per pass: a resume defaults to the values last used. */
  workers: number;
  microBatch: number;
}

/** The JSON kept in train_state.safetensors' metadata (besides its format and version). */
interface SavedState {
  step: number;
  tokens: number;
  seconds: number;
  samplerState: number;
  optimizerStep: number;
  trainTokens: number;
  run: RunOptions;
}

/**
 * The options of a pretraining run. Each is the `offtune pretrain` flag of
 * the same name (camelCase; `offtune pretrain --help` gives the defaults);
 * undefined means "not given": a fresh run takes the default, a resumed run
 * the saved value, and a given run-defining option must repeat it.
 */
export interface PretrainOptions {
  /** The run directory (model, tokenizer, train state, log). */
  out: string;
  /**
   * An HF OPT checkpoint directory whose weights start the run instead of
   * random initialisation (module notes): the model comes from its
   * config.json, `ctx` defaults to its positions and `tokenizer` to its
   * tokenizer.json (else the fixture tokenizer). On resume: the checkpoint
   * the run started from (the same content), or absent.
   */
  init?: string;
  /** JSON with HF OPT keys; the shape options override it. */
  config?: string;
  /** Blocks (default 12). */
  layers?: number;
  /** Width (default 256). */
  hidden?: number;
  /** Attention heads (default hidden / 64). */
  heads?: number;
  /** MLP width (default 4 · hidden). */
  ffn?: number;
  /** Training window = max positions. */
  ctx?: number;
  /** Directory holding train.bin and valid.bin (Uint16 token streams). */
  data?: string;
  /** The training token stream (default `<data>/train.bin`); on resume, names the stream to continue on. */
  train?: string;
  /**
   * Every n steps (default steps / 10; 0 = never) log the validation loss of
   * the model and of its half-middle LayerDrop; off for models with fewer
   * than 2 middle blocks.
   */
  trackEvery?: number;
  /** tokenizer.json (copied into the run). */
  tokenizer?: string;
  /** Total optimizer steps (the schedule spans them). */
  steps?: number;
  /** Stop and save after this step. */
  until?: number;
  /** Windows per step (default 16). */
  batch?: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** Cosine floor (default lr / 10). */
  minLr?: number;
  /** Warmup steps (default min(100, steps / 10)). */
  warmup?: number;
  /** AdamW decoupled weight decay (default 0.1). */
  weightDecay?: number;
  /** Initialisation and sampling seed (default 0); with `init`, sampling only. */
  seed?: number;
  /** Worker threads, 0 = this thread. */
  workers?: number;
  /** Rows per forward/backward pass in a worker (default 4). */
  microBatch?: number;
  /** Validation loss every n steps (default 100). */
  evalEvery?: number;
  /** Validation windows of ctx tokens (default 32). */
  evalWindows?: number;
  /** Checkpoint every n steps (default 500; always at the end). */
  saveEvery?: number;
  /** Store model.safetensors as F16 (the train state stays F32). */
  fp16?: boolean;
  /** Continue the run in `out` from its train state. */
  resume?: boolean;
  /** Polled after every step: when true, checkpoint and return. */
  shouldStop?: () => boolean;
  /**
   * Receives a `pretrain` event per step: steps done and to do in this
   * session, the step's tokens, seconds and loss, and the step and
   * validation loss as detail.
   */
  events?: StageEvents;
}

/** The option each `offtune pretrain` flag sets (error messages name the flag). */
const FLAG_OPTIONS = {
  init: "init",
  config: "config",
  layers: "layers",
  hidden: "hidden",
  heads: "heads",
  ffn: "ffn",
  ctx: "ctx",
  data: "data",
  train: "train",
  "track-every": "trackEvery",
  tokenizer: "tokenizer",
  steps: "steps",
  until: "until",
  batch: "batch",
  lr: "lr",
  "min-lr": "minLr",
  warmup: "warmup",
  "weight-decay": "weightDecay",
  seed: "seed",
  workers: "workers",
  "micro-batch": "microBatch",
  "eval-every": "evalEvery",
  "eval-windows": "evalWindows",
  "save-every": "saveEvery",
  fp16: "fp16",
} as const satisfies Record<string, keyof PretrainOptions>;

type Flags = PretrainOptions;
type FlagName = keyof typeof FLAG_OPTIONS;

/** Whether the option of flag `name` was given. */
function given(flags: Flags, name: FlagName): boolean {
  return flags[FLAG_OPTIONS[name]] !== undefined;
}

/** An integer option ≥ `min`, or `fallback` when absent. */
function intFlag(flags: Flags, name: FlagName, fallback: number, min = 1): number {
  const raw = flags[FLAG_OPTIONS[name]];
  if (raw === undefined) return fallback;
  if (typeof raw !== "number" || !Number.isInteger(raw) || raw < min) {
    throw new Error(`--${name} must be an integer ≥ ${min}, got "${raw}"`);
  }
  return raw;
}

/** A positive (or, with `allowZero`, non-negative) number option, or `fallback` when absent. */
function numberFlag(flags: Flags, name: FlagName, fallback: number, allowZero = false): number {
  const raw = flags[FLAG_OPTIONS[name]];
  if (raw === undefined) return fallback;
  if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0 || (raw === 0 && !allowZero)) {
    throw new Error(`--${name} must be a ${allowZero ? "non-negative" : "positive"} number, got "${raw}"`);
  }
  return raw;
}

async function readJsonFile(path: string, what: string): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new CheckpointError(path, `Cannot read ${what} "${path}": ${(e as Error).message}`, { cause: e });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CheckpointError(path, `Cannot read ${what} "${path}": expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Reads a Uint16 little-endian token file, checking every id is below
 * `vocabSize` and that it holds at least one window of `ctx` tokens.
 */
async function readTokenFile(path: string, vocabSize: number, ctx: number): Promise<Uint16Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new CheckpointError(path, `Cannot read token file "${path}": ${(e as Error).message}`, { cause: e });
  }
  if (bytes.byteLength % 2 !== 0 || bytes.byteLength === 0) {
    throw new CheckpointError(
      path,
      `Cannot read token file "${path}": ${bytes.byteLength} bytes is not a positive whole number of Uint16 ids`,
    );
  }
  if (bytes.byteLength / 2 < ctx) {
    throw new CheckpointError(
      path,
      `Token file "${path}" holds ${bytes.byteLength / 2} tokens, fewer than one window of ${ctx}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tokens = new Uint16Array(bytes.byteLength / 2);
  for (let i = 0; i < tokens.length; i++) {
    const id = view.getUint16(2 * i, true);
    if (id >= vocabSize) {
      throw new CheckpointError(
        path,
        `Token file "${path}" holds id ${id} at position ${i}, outside the vocabulary of ${vocabSize}`,
      );
    }
    tokens[i] = id;
  }
  return tokens;
}

/** Writes `data` to `path` through a temporary sibling and a rename. */
async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(temp, data);
  await rename(temp, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** HF config keys the shape flags map to. */
const SHAPE_KEYS = {
  layers: "num_hidden_layers",
  hidden: "hidden_size",
  heads: "num_attention_heads",
  ffn: "ffn_dim",
} as const;

/** A model config JSON and the file it was read from (named in errors). */
interface ConfigJson {
  json: Record<string, unknown>;
  path: string;
}

/** The `--config` JSON, when given. */
async function configFlagJson(flags: Flags): Promise<ConfigJson | undefined> {
  return flags.config === undefined ? undefined : { json: await readJsonFile(flags.config, "model config"), path: flags.config };
}

/**
 * The HF config of a fresh run: `source` (the `--config` JSON, or the
 * `--init` checkpoint's config.json), overridden by the shape flags,
 * vocabulary and special ids from the tokenizer. Any other key of the JSON
 * that offtune writes differently is refused rather than ignored.
 */
async function freshConfig(
  flags: Flags,
  tokenizerPath: string,
  ctx: number,
  source: ConfigJson | undefined,
): Promise<Record<string, unknown>> {
  const given = source?.json ?? {};
  const fromJson = (key: string): number | undefined => {
    const v = given[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(
        `Model config "${source?.path}": "${key}" must be a positive integer, found ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const layers = intFlag(flags, "layers", fromJson(SHAPE_KEYS.layers) ?? 12);
  const hidden = intFlag(flags, "hidden", fromJson(SHAPE_KEYS.hidden) ?? 256);
  const heads = intFlag(flags, "heads", fromJson(SHAPE_KEYS.heads) ?? Math.max(1, Math.round(hidden / 64)));
  const ffn = intFlag(flags, "ffn", fromJson(SHAPE_KEYS.ffn) ?? 4 * hidden);
  const maxPositions = fromJson("max_position_embeddings") ?? ctx;
  if (maxPositions < ctx) {
    throw new Error(`Model config "${source?.path}": max_position_embeddings ${maxPositions} is below --ctx ${ctx}`);
  }
  const tokenizer = await loadTokenizer(tokenizerPath);
  const vocabSize = fromJson("vocab_size") ?? tokenizer.vocabSize;
  if (vocabSize < tokenizer.vocabSize) {
    throw new Error(
      `Model config "${source?.path}": vocab_size ${vocabSize} is below the tokenizer's ${tokenizer.vocabSize}`,
    );
  }
  const eos = tokenizer.eosId ?? tokenizer.tokenToId("</s>");
  const pad = tokenizer.padId ?? tokenizer.tokenToId("<pad>");
  if (eos === undefined || pad === undefined) {
    throw new Error(
      `Tokenizer "${tokenizerPath}" names no ${eos === undefined ? "end-of-sequence (</s>)" : "padding (<pad>)"} token`,
    );
  }
  const shape: OptHyperParameters = {
    layers,
    hidden,
    heads,
    ffn,
    maxPositions,
    vocabSize,
    bosId: tokenizer.bosId ?? eos,
    eosId: eos,
    padId: pad,
  };
  const config = optConfigJson(shape, flags.fp16 ? "float16" : "float32");
  const ignorable = new Set(["torch_dtype", ...Object.values(SHAPE_KEYS), "max_position_embeddings", "vocab_size"]);
  for (const [key, value] of Object.entries(given)) {
    if (key in config && !ignorable.has(key) && JSON.stringify(config[key]) !== JSON.stringify(value)) {
      throw new Error(
        `Model config "${source?.path}": "${key}" is ${JSON.stringify(value)}; offtune pretrains with ${
          JSON.stringify(config[key])
        }`,
      );
    }
  }
  return config;
}

/** The default training window of a run from random initialisation. */
const DEFAULT_CTX = 128;

/** The run options of a fresh run from the flags; `ctx` defaults to `defaultCtx`. */
function freshRunOptions(flags: Flags, defaultCtx = DEFAULT_CTX): RunOptions {
  const steps = intFlag(flags, "steps", 2000);
  const lr = numberFlag(flags, "lr", 1e-3);
  return {
    data: resolve(flags.data ?? "fixtures/data/pretrain"),
    train: resolve(flags.train ?? join(flags.data ?? "fixtures/data/pretrain", "train.bin")),
    tokenizer: resolve(flags.tokenizer ?? "fixtures/tokenizer/tokenizer.json"),
    batch: intFlag(flags, "batch", 16),
    ctx: intFlag(flags, "ctx", defaultCtx, 2),
    lr,
    minLr: numberFlag(flags, "min-lr", lr / 10, true),
    warmup: intFlag(flags, "warmup", Math.min(100, Math.floor(steps / 10)), 0),
    steps,
    seed: intFlag(flags, "seed", 0, 0),
    weightDecay: numberFlag(flags, "weight-decay", 0.1, true),
    evalWindows: intFlag(flags, "eval-windows", 32),
    fp16: flags.fp16 ?? false,
    workers: intFlag(flags, "workers", availableParallelism(), 0),
    microBatch: intFlag(flags, "micro-batch", 4),
  };
}

/**
 * The run options of a resumed run: the saved ones, with `--steps`, `--fp16`,
 * `--data` (a moved copy), `--workers` and `--micro-batch` allowed to change
 * (the last two change the order of gradient sums, so the run stops being
 * bit-identical to an uninterrupted one); any other run-defining flag must
 * repeat the saved value.
 */
function resumedRunOptions(flags: Flags, saved: RunOptions): RunOptions {
  const fresh = freshRunOptions(flags);
  const fixed: Array<[FlagName, keyof RunOptions]> = [
    ["tokenizer", "tokenizer"],
    ["batch", "batch"],
    ["ctx", "ctx"],
    ["lr", "lr"],
    ["min-lr", "minLr"],
    ["warmup", "warmup"],
    ["seed", "seed"],
    ["weight-decay", "weightDecay"],
    ["eval-windows", "evalWindows"],
  ];
  for (const [flag, key] of fixed) {
    if (given(flags, flag) && fresh[key] !== saved[key]) {
      throw new Error(`--${flag} ${fresh[key]} differs from the run being resumed (${saved[key]})`);
    }
  }
  return {
    ...saved,
    steps: flags.steps !== undefined ? fresh.steps : saved.steps,
    fp16: flags.fp16 ?? saved.fp16,
    data: flags.data !== undefined ? fresh.data : saved.data,
    train: flags.train !== undefined || flags.data !== undefined ? fresh.train : trainStream(saved),
    workers: flags.workers !== undefined ? fresh.workers : saved.workers ?? fresh.workers,
    microBatch: flags.microBatch !== undefined ? fresh.microBatch : saved.microBatch ?? fresh.microBatch,
  };
}

/** The training stream of a run: `run.train`, or `<data>/train.bin` for runs saved before `--train` existed. */
function trainStream(run: RunOptions): string {
  return run.train ?? join(run.data, "train.bin");
}

/**
 * The validation loss of the model and of its half-middle LayerDrop (the
 * default 2 + 2 adapter blocks and every other middle block, as
 * `build-emulator --method layerdrop --ratio 0.5` keeps them), computed in
 * this thread: the log fields `track_val_loss` and `track_layerdrop_val_loss`
 * that show whether the middle blocks have come to matter (plot-training draws
 * them).
 */
function trackLayerDrop(
  model: TrainModel,
  params: Float32Array,
  validation: TokenBatch,
  microBatch: number,
  kept: readonly number[],
): { track_val_loss: number; track_layerdrop_val_loss: number } {
  return {
    track_val_loss: batchLoss(model, params, validation, microBatch),
    track_layerdrop_val_loss: batchLoss(model, params, validation, microBatch, kept),
  };
}

/** Writes the model (HF layout) and then the train state of `state`. */
async function saveRun(
  out: string,
  model: TrainModel,
  run: RunOptions,
  state: TrainState,
  trainTokens: number,
): Promise<void> {
  const { arch, cfg, layout } = model;
  const { outer, blocks } = weightsFromFlat(layout, state.params);
  try {
    const tensors = [toHfTensors(arch, cfg, "outer", outer), ...blocks.map((w, i) => toHfTensors(arch, cfg, i, w))]
      .flat();
    const dtype = run.fp16 ? "F16" : "F32";
    await saveCheckpoint(out, { ...cfg.raw, torch_dtype: run.fp16 ? "float16" : "float32" }, tensors, { dtype });
  } finally {
    tf.dispose([...outer.values(), ...blocks.flatMap((w) => [...w.values()])]);
  }
  const opt = state.optimizer.state();
  const saved: SavedState = {
    step: state.step,
    tokens: state.tokens,
    seconds: state.seconds,
    samplerState: state.sampler.state,
    optimizerStep: opt.step,
    trainTokens,
    run,
  };
  const path = join(out, PRETRAIN_STATE_FILE);
  const temp = siblingName(path, "tmp");
  await writeStateFile(temp, layout, { params: state.params, m: opt.m, v: opt.v }, STATE, saved);
  await rename(temp, path);
}

/** Reads train_state.safetensors: the saved JSON and the three flat vectors. */
async function loadRun(
  out: string,
  model: TrainModel,
): Promise<{ saved: SavedState; params: Float32Array; m: Float32Array; v: Float32Array }> {
  const { meta, params, m, v } = await readStateFile<SavedState>(join(out, PRETRAIN_STATE_FILE), model.layout, STATE, "the model");
  return { saved: meta, params, m, v };
}

/** Keeps the log lines of steps ≤ `step` (a resumed run rewrites what followed its checkpoint). */
async function trimLog(path: string, step: number): Promise<void> {
  if (!(await exists(path))) return;
  const kept = (await readFile(path, "utf8")).split("\n").filter((line) => {
    try {
      return (JSON.parse(line) as { step?: number }).step! <= step;
    } catch {
      return false; // blank or torn last line
    }
  });
  await writeAtomic(path, kept.map((l) => l + "\n").join(""));
}

/** Copies the tokenizer (and a tokenizer_config.json beside it) into `out`. */
async function copyTokenizer(tokenizerPath: string, out: string): Promise<void> {
  const sources = [tokenizerPath, join(dirname(tokenizerPath), "tokenizer_config.json")];
  for (const source of sources) {
    if (!(await exists(source))) continue;
    const target = join(out, basename(source));
    const temp = join(out, `.${basename(source)}.${process.pid}.tmp`);
    await copyFile(source, temp);
    await rename(temp, target);
  }
}

/**
 * Starts a fresh run's directory `out` atomically: the tokenizer, a step-0
 * checkpoint (`save`) and, when given, the log's step-0 line (`firstLog`)
 * are written into a temporary sibling that is then renamed to `out`. A run
 * killed at any point thus leaves no run or one that `resume` continues,
 * never a directory that is neither (which the output check would refuse,
 * docs/GUARANTEES.md).
 */
async function createRunDirectory(
  out: string,
  tokenizerPath: string,
  save: (dir: string) => Promise<void>,
  firstLog: Record<string, unknown> | undefined,
): Promise<void> {
  const tx = createDirectoryTransaction(out);
  try {
    await copyTokenizer(tokenizerPath, tx.temp);
    await save(tx.temp);
    if (firstLog) await writeFileAtomic(join(tx.temp, LOG_FILE), new TextEncoder().encode(JSON.stringify(firstLog) + "\n"));
    await tx.commit();
  } catch (e) {
    await tx.abort();
    throw e;
  }
}

/** A run's model, options, starting parameters and (when resuming) saved state. */
interface PreparedRun {
  model: TrainModel;
  run: RunOptions;
  /** The parameters the run continues from: random, the `--init` checkpoint's, or the saved ones. */
  params: Float32Array;
  restored?: Awaited<ReturnType<typeof loadRun>>;
}

/** A fresh run: from random initialisation, or from the `--init` checkpoint. */
async function startRun(flags: Flags): Promise<PreparedRun> {
  if (flags.init !== undefined) return await initRun(flags, flags.init);
  const run = freshRunOptions(flags);
  const model = trainModel(await freshConfig(flags, run.tokenizer, run.ctx, await configFlagJson(flags)));
  return { model, run, params: initOptParams(model.layout, model.cfg, run.seed) };
}

/**
 * A fresh run from the weights of the checkpoint in `dir` (module notes).
 * Its config.json is the model's, checked as a `--config` would be: an OPT
 * as offtune pretrains it, whose vocabulary and special ids the tokenizer
 * must fit and whose positions must cover `--ctx`. `--ctx` defaults to its
 * positions, `--tokenizer` to its own (as `tokenizerFor` finds it).
 */
async function initRun(flags: Flags, dir: string): Promise<PreparedRun> {
  const handle = await openInitCheckpoint(dir);
  try {
    const config = { json: handle.cfg.raw, path: join(dir, "config.json") };
    await checkModelFlags(flags, config, "the --init checkpoint");
    const { path: tokenizer } = await tokenizerFor(dir, handle.cfg, flags.tokenizer, true);
    const run: RunOptions = {
      ...freshRunOptions(flags, handle.cfg.maxPositions),
      tokenizer: resolve(tokenizer),
      init: { path: resolve(dir), sourceHash: handle.sourceHash },
    };
    const model = trainModel(await freshConfig(flags, run.tokenizer, run.ctx, config));
    return { model, run, params: await checkpointParams(handle, model.layout) };
  } finally {
    await handle.close();
  }
}

/**
 * Checks that the model options given (`--config` and the shape flags)
 * describe `model`, the config.json of the model a run already has: the run
 * being resumed (the same command plus --resume repeats them) or the
 * `--init` checkpoint (`what` says which). They cannot change it: the first
 * disagreement is refused, naming the flag and both values.
 */
async function checkModelFlags(flags: Flags, model: ConfigJson, what: string): Promise<void> {
  for (const [flag, key] of Object.entries(SHAPE_KEYS) as Array<[keyof typeof SHAPE_KEYS, string]>) {
    const value = flags[FLAG_OPTIONS[flag]];
    if (value !== undefined && value !== model.json[key]) {
      throw new Error(`--${flag} ${value} disagrees with ${what}: "${model.path}" has ${key} ${JSON.stringify(model.json[key])}`);
    }
  }
  const config = await configFlagJson(flags);
  for (const [key, value] of Object.entries(config?.json ?? {})) {
    if (key !== "torch_dtype" && key in model.json && JSON.stringify(value) !== JSON.stringify(model.json[key])) {
      throw new Error(
        `--config "${config!.path}" disagrees with ${what}: it has ${key} ${JSON.stringify(value)}, ` +
          `"${model.path}" has ${JSON.stringify(model.json[key])}`,
      );
    }
  }
}

/**
 * Checks an `--init` given with `--resume`: the run must have started from a
 * checkpoint with the same content (its hash; the directory may have moved).
 */
async function checkInitRepeated(flags: Flags, init: InitSource | undefined): Promise<void> {
  if (flags.init === undefined) return;
  if (init === undefined) {
    throw new Error(`--init "${flags.init}": the run being resumed started from random initialisation, not from a checkpoint`);
  }
  const handle = await openInitCheckpoint(flags.init);
  await handle.close();
  if (handle.sourceHash !== init.sourceHash) {
    throw new Error(
      `--init "${flags.init}" (sha256 ${handle.sourceHash.slice(0, 12)}…) is not the checkpoint the run being resumed ` +
        `started from ("${init.path}", sha256 ${init.sourceHash.slice(0, 12)}…)`,
    );
  }
}

async function resumeRun(flags: Flags, out: string): Promise<PreparedRun> {
  const configPath = join(out, "config.json");
  const config = await readJsonFile(configPath, "config");
  const model = trainModel(config);
  const restored = await loadRun(out, model);
  const run = resumedRunOptions(flags, restored.saved.run);
  await checkModelFlags(flags, { json: config, path: configPath }, "the run being resumed");
  await checkInitRepeated(flags, run.init);
  return { model, run, params: restored.params, restored };
}

/**
 * The log line of step 0 of a run started from a checkpoint, before any
 * update (module notes): the validation loss of its weights, computed in
 * this thread; the training fields are null, as no batch has been trained on.
 */
function initialLogLine(model: TrainModel, params: Float32Array, validation: TokenBatch, microBatch: number): Record<string, unknown> {
  const val_loss = batchLoss(model, params, validation, microBatch);
  return { step: 0, tokens: 0, loss: null, lr: null, grad_norm: null, val_loss, tokens_per_s: null, seconds: 0 };
}

/** What {@link pretrain} did. */
export interface PretrainResult {
  /** The last step's record; undefined when there was nothing to do. */
  last: StepRecord | undefined;
  /** The run's total steps (its schedule's length). */
  steps: number;
  /** The run directory, resolved. */
  out: string;
}

/**
 * Runs (or, with `resume`, continues) the pretraining run in `options.out`
 * (module notes) until `until` or `shouldStop`, checkpointing as it goes.
 *
 * @throws Error for a bad option, an existing run without `resume` (or a
 *   missing one with it), a token file that does not fit the model
 */
export async function pretrain(options: PretrainOptions): Promise<PretrainResult> {
  const flags = options;
  const out = resolve(flags.out);
  const statePath = join(out, PRETRAIN_STATE_FILE);
  removeStaleTemporaries([out, statePath]);
  const resuming = flags.resume ?? false;
  if (resuming && !(await exists(statePath))) throw new Error(`Cannot resume: "${statePath}" does not exist`);
  if (!resuming && (await exists(statePath))) {
    throw new Error(`"${out}" already holds a run; pass --resume to continue it or choose another --out`);
  }

  const { model, run, params, restored } = resuming ? await resumeRun(flags, out) : await startRun(flags);
  const schedule = { peak: run.lr, floor: run.minLr, warmup: run.warmup, total: run.steps };
  validateSchedule(schedule);
  const until = intFlag(flags, "until", run.steps);
  if (until > run.steps) throw new Error(`--until ${until} exceeds --steps ${run.steps}`);
  if (run.ctx > model.cfg.maxPositions) {
    throw new Error(`--ctx ${run.ctx} exceeds the model's ${model.cfg.maxPositions} positions`);
  }

  const trainPath = trainStream(run);
  const trainTokens = await readTokenFile(trainPath, model.cfg.vocabSize, run.ctx);
  const validTokens = await readTokenFile(join(run.data, "valid.bin"), model.cfg.vocabSize, run.ctx);
  // An explicit `train` on resume names the stream to continue on (a later phase, or a rebuilt file).
  const switchedStream = restored !== undefined && flags.train !== undefined;
  if (restored && !switchedStream && restored.saved.trainTokens !== trainTokens.length) {
    throw new Error(
      `"${trainPath}" holds ${trainTokens.length} tokens, the run being resumed trained on ${restored.saved.trainTokens}`,
    );
  }
  const validation = validationWindows(validTokens, run.ctx, run.evalWindows);
  const middle = model.cfg.layers - DEFAULT_SPLIT.bottom - DEFAULT_SPLIT.top;
  if (flags.trackEvery !== undefined && flags.trackEvery !== 0 && middle < 2) {
    throw new Error(`--track-every needs at least 2 middle blocks besides the 2 + 2 adapter blocks; the model has ${model.cfg.layers} blocks`);
  }
  const trackEvery = middle < 2 ? 0 : intFlag(flags, "track-every", Math.ceil(run.steps / 10), 0);
  const layerDropKept = trackEvery > 0 ? layerDropBlocks(model.cfg.layers, DEFAULT_SPLIT, 0.5) : [];

  const optimizer = new AdamW(optimizerParams(model.layout), { weightDecay: run.weightDecay });
  const state: TrainState = {
    step: restored?.saved.step ?? 0,
    tokens: restored?.saved.tokens ?? 0,
    seconds: restored?.saved.seconds ?? 0,
    params,
    optimizer,
    sampler: new WindowSampler(
      trainTokens,
      run.batch,
      run.ctx,
      restored?.saved.samplerState ?? ((run.seed ^ SAMPLER_SEED_MIX) >>> 0),
    ),
  };
  if (restored) optimizer.load({ step: restored.saved.optimizerStep, m: restored.m, v: restored.v });

  if (!resuming) {
    const firstLog = run.init && {
      ...initialLogLine(model, params, validation, run.microBatch),
      ...(trackEvery > 0 ? trackLayerDrop(model, params, validation, run.microBatch, layerDropKept) : {}),
    };
    await createRunDirectory(out, run.tokenizer, (dir) => saveRun(dir, model, run, state, trainTokens.length), firstLog);
  }
  const logPath = join(out, LOG_FILE);
  await trimLog(logPath, state.step);

  const engine: GradientEngine = run.workers === 0
    ? inProcessEngine(model, run.microBatch)
    : await startDataParallel(model, run.workers, run.microBatch);
  const startStep = state.step;
  const startTokens = state.tokens;
  let stepStarted = performance.now();
  let sessionTokens = 0;
  let last: StepRecord | undefined;
  try {
    last = await train(state, {
      engine,
      schedule,
      clipNorm: 1.0,
      until,
      validation,
      evalEvery: intFlag(flags, "eval-every", 100),
      saveEvery: intFlag(flags, "save-every", 500, 0),
      shouldStop: flags.shouldStop,
      onStep: async (record) => {
        const { step, tokens, loss, lr, grad_norm, val_loss = null, tokens_per_s, seconds } = record;
        const tracked = trackEvery > 0 && (step % trackEvery === 0 || step === until)
          ? trackLayerDrop(model, state.params, validation, run.microBatch, layerDropKept)
          : {};
        const line = { step, tokens, loss, lr, grad_norm, val_loss, tokens_per_s, seconds, ...tracked };
        await writeFile(logPath, JSON.stringify(line) + "\n", { flag: "a" });
        const val = record.val_loss === undefined ? "" : ` val ${record.val_loss.toFixed(3)}`;
        const now = performance.now();
        flags.events?.next({
          stage: "pretrain",
          done: record.step - startStep,
          total: until - startStep,
          unit: "steps",
          seconds: (now - stepStarted) / 1000,
          tokens: record.tokens - startTokens - sessionTokens,
          loss: record.loss,
          detail: `step ${record.step}/${run.steps} loss ${record.loss.toFixed(3)}${val}`,
        });
        sessionTokens = record.tokens - startTokens;
        stepStarted = now;
      },
      onCheckpoint: (s) => saveRun(out, model, run, s, trainTokens.length),
    });
  } finally {
    await engine.close();
  }
  // A finished run resumed with another --fp16 rewrites its model in that dtype.
  if (!last && restored && restored.saved.run.fp16 !== run.fp16) await saveRun(out, model, run, state, trainTokens.length);
  return { last, steps: run.steps, out };
}
