/**
 * Fine-tuning a {@link ModelHandle} on a task's items, two ways:
 *
 * - {@link tuneAdapter}: the data owner's step (docs/METHOD.md §1 step 2). Only
 *   the adapter blocks (the bottom `split.bottom` and top `split.top`) train,
 *   in full (§4 default) or through LoRA factors (§4 option); embeddings and
 *   head stay frozen unless asked; the middle blocks are whatever the handle
 *   holds: an emulator's compressed blocks, or the original ones (the
 *   "adapter tuned on the full model" variant). Every epoch the adapter
 *   package and the training state are written to the output directory
 *   (src/train/tune_package.ts), so `resume` continues an interrupted run;
 *   the finished package holds the adapter alone. When the output directory
 *   already holds something (a finished adapter), the unfinished checkpoints
 *   go beside it, to `<out>.partial`, and the finished adapter replaces it
 *   only at the end (docs/GUARANTEES.md "Outputs").
 * - {@link tuneFullModel}: the Full FT reference (docs/METHOD.md §1 table, §3):
 *   every block (and optionally the embeddings) of the original trains with
 *   the same loss, optimizer and schedule; the tuned weights are returned.
 *
 * All blocks stay resident (the small models this project tunes fit; the
 * loop needs every block on each step).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { MANIFEST_FILE, readManifest } from "../io/manifest.ts";
import type { WeightMap } from "../model/types.ts";
import { blockRole, type ModelHandle } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";
import { AdamW } from "./adamw.ts";
import type { LoraOptions } from "./lora.ts";
import { answerRow, type AnswerRow, stepsPerEpoch, type TuneExample } from "./mc_batches.ts";
import { optimizerParams, slotTensors } from "./params.ts";
import {
  runTuning,
  TUNE_DEFAULTS,
  tuneSchedule,
  type TuneHyper,
  type TuneLoopOptions,
  type TuneState,
  type TuneStepRecord,
} from "./tune_loop.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { readFullTuneState, writeFullTuneState } from "./full_ft_state.ts";
import { readTuneState, TUNE_STATE_FILE, writeAdapterPackage } from "./tune_package.ts";
import { startTuneEngine } from "./tune_engine.ts";
import { type ResidentModel, type TrainableSet, trainableSet, type TuneScope } from "./tune_params.ts";

/** Options shared by both ways of tuning. */
export interface TuneCommonOptions {
  /** Training examples (src/train/mc_batches.ts `goldExamples`). */
  examples: readonly TuneExample[];
  /** Id written into right-padding slots (never read). */
  padId: number;
  /** Settings; missing ones take {@link TUNE_DEFAULTS}. */
  hyper?: Partial<TuneHyper>;
  /** Also tune the outer weights (embeddings, positions, final norm, untied head) in full. */
  tuneEmbeddings?: boolean;
  /** Receives every step's record (the tuning log's line), awaited before the next step. */
  onStep?: (record: TuneStepRecord) => void | Promise<void>;
  /**
   * Receives a `tune` event per step: steps done and to do in this session
   * (a resumed run counts from where it resumed), the step's seconds and
   * loss, and the epoch, learning rate and examples seen as detail.
   */
  events?: StageEvents;
  /** Polled after every step; when true the run checkpoints and stops. */
  shouldStop?: () => boolean;
  /**
   * Threads computing each step's micro-batches: `n - 1` worker threads and
   * this one (src/train/tune_engine.ts); default 1. The result is the same
   * bits for any count (docs/DISTRIBUTED.md "How tune and eval use the cores").
   */
  workers?: number;
}

/** Options of {@link tuneAdapter}. */
export interface TuneAdapterOptions extends TuneCommonOptions {
  /** The adapter package directory (checkpoints go there too). */
  out: string;
  /** LoRA on the adapter blocks' linears instead of full fine-tuning. */
  lora?: LoraOptions;
  /** Continue the unfinished run in `out` or `<out>.partial` (its settings must be repeated). */
  resume?: boolean;
  /** Start over even when an unfinished run is there (it is discarded). */
  force?: boolean;
  /** Extra manifest fields describing the data (e.g. `{ task }`), JSON values. */
  describe?: Record<string, unknown>;
  /** The tokenizer.json the examples were encoded with; the package carries it (docs/SHARDS.md). */
  tokenizer?: string;
}

/** What a tuning call did. */
export interface TuneSummary {
  /** Optimizer steps completed in all (across resumes) and the run's total. */
  step: number;
  /** The run's total steps. */
  total: number;
  /** Whether `shouldStop` ended the call before the last step. */
  stopped: boolean;
  /** Mean training loss of each completed epoch (across resumes). */
  epochLoss: number[];
  /** Trainable parameters. */
  parameters: number;
  /** Training examples per second over the steps of this call (0 if none ran). */
  examplesPerSecond: number;
}

/** What {@link tuneAdapter} did: the summary and where its package is. */
export interface TuneAdapterSummary extends TuneSummary {
  /** `out` once finished; else where the unfinished checkpoint is (`out` or `<out>.partial`). */
  dir: string;
}

/**
 * The directory beside `out` where a run's unfinished checkpoints live while
 * `out` holds something else (a finished adapter): `<out>.partial`.
 */
export function partialDirOf(out: string): string {
  return `${out.replace(/[/\\]+$/, "")}.partial`;
}

/**
 * The model with every block it runs loaded, in `handle.blockIndices` order
 * (the caller disposes the blocks, not the handle's outer weights). The
 * resident model and its trainable set count blocks by position in that
 * order; packages name them by original index ({@link byBlockIndex}).
 */
export async function residentModel(handle: ModelHandle): Promise<ResidentModel> {
  const blocks: WeightMap[] = [];
  try {
    for (const i of handle.blockIndices) blocks.push(await handle.loadBlock(i));
  } catch (e) {
    for (const b of blocks) tf.dispose([...b.values()]);
    throw e;
  }
  return { arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks };
}

/** Parts keyed by resident position re-keyed by original block index, as an adapter package names them. */
function byBlockIndex<T>(handle: ModelHandle, parts: Map<number | "outer", T>): Map<number | "outer", T> {
  return new Map([...parts].map(([part, value]) => [part === "outer" ? part : handle.blockIndices[part], value]));
}

/** Disposes the blocks {@link residentModel} loaded (the handle keeps its outer weights). */
export function releaseBlocks(model: ResidentModel): void {
  for (const b of model.blocks) tf.dispose([...b.values()]);
}

/** The examples as training rows for `handle`'s positions and vocabulary. */
function trainingRows(handle: ModelHandle, examples: readonly TuneExample[]): AnswerRow[] {
  if (examples.length === 0) throw new Error("No training examples");
  return examples.map((e) => answerRow(e, handle.cfg.maxPositions, handle.cfg.vocabSize, `Example "${e.id}"`));
}

function fullHyper(hyper: Partial<TuneHyper> = {}): TuneHyper {
  const defined = Object.fromEntries(Object.entries(hyper).filter(([, v]) => v !== undefined));
  return { ...TUNE_DEFAULTS, ...defined };
}

/** SHA-256 over the examples' tokens and answer starts: identifies the training data of a run. */
function examplesHash(examples: readonly TuneExample[]): string {
  const hash = createHash("sha256");
  for (const e of examples) hash.update(Int32Array.from([e.start, e.tokens.length, ...Array.from(e.tokens)]));
  return hash.digest("hex");
}

/** The first path where two JSON values differ, e.g. `hyper.lr: 0.0001 vs 0.001`. */
function firstDifference(a: unknown, b: unknown, path: string): string | undefined {
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        path ? `${path}.${key}` : key,
      );
      if (d) return d;
    }
    return undefined;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : `${path}: ${JSON.stringify(a)} then, ${JSON.stringify(b)} now`;
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** Whether `dir` does not exist or is an empty directory. */
function isVacant(dir: string): Promise<boolean> {
  return readdir(dir).then((entries) => entries.length === 0, () => true);
}

/**
 * Where the unfinished checkpoints of a run to `out` go: with `resume`, the
 * directory holding the run's state (`<out>.partial` first, the later one);
 * else `out` when it is vacant, or `<out>.partial` beside whatever `out`
 * holds, which stays untouched until the run finishes.
 *
 * @throws Error when resuming with no state in either, or starting over an
 *   unfinished run without `force`
 */
async function runDirectory(out: string, resume: boolean, force: boolean): Promise<string> {
  const partial = partialDirOf(out);
  const stateIn = async (dir: string) => (await exists(join(dir, TUNE_STATE_FILE))) ? dir : undefined;
  const unfinished = (await stateIn(partial)) ?? (await stateIn(out));
  if (resume) {
    if (unfinished) return unfinished;
    const finished = await exists(join(out, MANIFEST_FILE));
    throw new Error(
      `Cannot resume "${out}": ${finished ? "it holds a finished adapter" : `"${join(out, TUNE_STATE_FILE)}" does not exist`}`,
    );
  }
  if (unfinished && !force) {
    throw new Error(
      `"${unfinished}" holds an unfinished tuning run; resume it (--resume), pass --force to start over, or choose another output directory`,
    );
  }
  if (unfinished === partial) await rm(partial, { recursive: true, force: true }); // the run --force discards
  return (await isVacant(out)) ? out : partial;
}

/** The loss log kept in the manifest: per-epoch means and the running sum of the current epoch. */
interface LossLog {
  epochLoss: number[];
  partialSum: number;
  partialSteps: number;
}

/** Folds step records into the loss log and the throughput of this call. */
function stepLog(perEpoch: number, log: LossLog) {
  let examples = 0;
  let seconds = 0;
  return {
    log,
    add(record: TuneStepRecord): void {
      examples += record.items;
      seconds += record.seconds;
      log.partialSum += record.loss;
      log.partialSteps += 1;
      if (record.step % perEpoch === 0) {
        log.epochLoss.push(log.partialSum / log.partialSteps);
        log.partialSum = 0;
        log.partialSteps = 0;
      }
    },
    examplesPerSecond: () => (seconds > 0 ? examples / seconds : 0),
  };
}

/** A run's starting state: step 0, the trainable set's initial parameters and a fresh optimizer. */
function freshState(trainable: TrainableSet, hyper: TuneHyper): TuneState {
  const optimizer = new AdamW(optimizerParams(trainable.layout), { weightDecay: hyper.weightDecay });
  return { step: 0, params: trainable.initial(hyper.seed), optimizer };
}

/**
 * Runs the tuning loop on `rows` from `state` (src/train/tune_loop.ts) on
 * `options.workers` threads, folding every step into `steps` and reporting it
 * as a `tune` event before the caller's `onStep`.
 */
async function train(
  model: ResidentModel,
  trainable: TrainableSet,
  state: TuneState,
  rows: readonly AnswerRow[],
  hyper: TuneHyper,
  options: TuneCommonOptions,
  steps: ReturnType<typeof stepLog>,
  onCheckpoint?: TuneLoopOptions["onCheckpoint"],
): Promise<{ stopped: boolean }> {
  const startStep = state.step;
  let examples = 0;
  tuneSchedule(hyper, rows.length); // checks the settings before any worker starts
  const maxParts = Math.ceil(Math.min(hyper.batch, rows.length) / hyper.microBatch);
  const engine = await startTuneEngine(model, trainable, options.workers ?? 1, maxParts);
  try {
    return await runTuning(trainable, state, {
      engine,
      items: rows,
      padId: options.padId,
      hyper,
      shouldStop: options.shouldStop,
      onStep: async (record) => {
        steps.add(record);
        examples += record.items;
        options.events?.next({
          stage: "tune",
          done: record.step - startStep,
          total: record.total - startStep,
          unit: "steps",
          seconds: record.seconds,
          loss: record.loss,
          detail: `epoch ${record.epoch + 1} loss ${record.loss.toFixed(3)} lr ${record.lr.toExponential(1)} (${examples} examples)`,
        });
        await options.onStep?.(record);
      },
      onCheckpoint,
    });
  } finally {
    await engine.close();
  }
}

/**
 * Tunes the adapter of `handle` on `options.examples` and writes the adapter
 * package to `options.out` (module doc). With `resume`, continues the
 * unfinished run there, bit-identically to an uninterrupted run on the same
 * backend. Whatever `out` holds (a finished adapter) stays untouched until
 * the run finishes: the checkpoints go to {@link partialDirOf} meanwhile.
 *
 * @throws Error when `out` holds an unfinished run and neither `resume` nor
 *   `force` is set, when resuming a directory without state or with other
 *   settings, or when the split leaves no adapter block to tune
 */
export async function tuneAdapter(handle: ModelHandle, options: TuneAdapterOptions): Promise<TuneAdapterSummary> {
  const { out } = options;
  const hyper = fullHyper(options.hyper);
  const runDir = await runDirectory(out, options.resume ?? false, options.force ?? false);
  const adapterBlocks = handle.blockIndices.filter((i) => blockRole(i, handle.cfg.layers, handle.split) === "adapter");
  if (adapterBlocks.length === 0 && !options.tuneEmbeddings) {
    throw new Error(`Split ${handle.split.bottom}+${handle.split.top} of "${handle.source}" has no adapter block to tune`);
  }
  const scope: TuneScope = {
    blocks: adapterBlocks.map((i) => handle.blockIndices.indexOf(i)),
    lora: options.lora,
    embeddings: options.tuneEmbeddings ?? false,
  };
  const rows = trainingRows(handle, options.examples);
  const run = {
    sourceHash: handle.sourceHash,
    split: handle.split,
    scope: { blocks: adapterBlocks, lora: options.lora ?? null, embeddings: scope.embeddings },
    hyper,
    examples: { count: options.examples.length, sha256: examplesHash(options.examples) },
  };
  const method = options.lora ? "lora" : "full";
  const settings = JSON.parse(JSON.stringify({ ...hyper, lora: options.lora ?? null, embeddings: scope.embeddings }));

  const model = await residentModel(handle);
  try {
    const trainable = trainableSet(model, scope);
    const state = freshState(trainable, hyper);
    let log: LossLog = { epochLoss: [], partialSum: 0, partialSteps: 0 };
    if (options.resume) {
      const saved = await readTuneState(runDir, trainable.layout);
      const difference = firstDifference(saved.run, JSON.parse(JSON.stringify(run)), "");
      if (difference) throw new Error(`Cannot resume "${runDir}" with other settings: ${difference}`);
      state.step = saved.step;
      state.params = saved.params;
      state.optimizer.load(saved.optimizer);
      log = ((await readManifest(runDir)).extra?.loss as LossLog | undefined) ?? log;
    }
    const perEpoch = stepsPerEpoch(rows.length, hyper.batch);
    const total = hyper.epochs * perEpoch;
    const steps = stepLog(perEpoch, log);
    let dir = runDir;
    const save = async (s: TuneState, epochsDone: number): Promise<void> => {
      const finished = s.step === total;
      await writeAdapterPackage(finished ? out : runDir, {
        model: handle,
        parts: byBlockIndex(handle, trainable.adapterArrays(s.params)),
        method,
        settings,
        extra: {
          ...options.describe,
          tunedOn: handle.source,
          examples: rows.length,
          parameters: trainable.layout.size,
          step: s.step,
          totalSteps: total,
          epochsDone,
          finished,
          loss: JSON.parse(JSON.stringify(log)),
        },
        tokenizer: options.tokenizer,
        state: finished ? undefined : { step: s.step, run, layout: trainable.layout, params: s.params, optimizer: s.optimizer.state() },
      });
      if (finished && runDir !== out) await rm(runDir, { recursive: true, force: true });
      dir = finished ? out : runDir;
    };
    const { stopped } = await train(model, trainable, state, rows, hyper, options, steps, save);
    return {
      dir,
      step: state.step,
      total,
      stopped,
      epochLoss: log.epochLoss,
      parameters: trainable.layout.size,
      examplesPerSecond: steps.examplesPerSecond(),
    };
  } finally {
    releaseBlocks(model);
  }
}

/** Options of {@link tuneFullModel}. */
export interface TuneFullOptions extends TuneCommonOptions {
  /**
   * The state file to checkpoint to at every epoch but the last, and when
   * `shouldStop` ends the run (src/train/full_ft_state.ts); none by default.
   */
  checkpoint?: string;
  /** Continue from `checkpoint` (its settings must be repeated). */
  resume?: boolean;
}

/** The result of {@link tuneFullModel}: the tuned weights (the caller disposes them) and a summary. */
export interface FullTuneResult extends TuneSummary {
  /** The tuned outer weights (embeddings, norms, head); the caller disposes them. */
  outer: WeightMap;
  /** One per `handle.blockIndices`, in that order. */
  blocks: WeightMap[];
}

/**
 * Fine-tunes every block of `handle` (and the outer weights with
 * `tuneEmbeddings`) on the examples: the Full FT reference. Returns the
 * complete tuned weights; frozen outer weights come back as copies. With
 * `checkpoint`, the state is saved every epoch and `resume` continues it,
 * bit-identically to an uninterrupted run on the same backend.
 *
 * @throws Error when resuming with other settings than the saved run's
 */
export async function tuneFullModel(handle: ModelHandle, options: TuneFullOptions): Promise<FullTuneResult> {
  const hyper = fullHyper(options.hyper);
  const rows = trainingRows(handle, options.examples);
  const model = await residentModel(handle);
  const scope: TuneScope = {
    blocks: model.blocks.map((_, i) => i),
    embeddings: options.tuneEmbeddings ?? false,
  };
  const run = {
    sourceHash: handle.sourceHash,
    embeddings: scope.embeddings,
    hyper,
    examples: { count: options.examples.length, sha256: examplesHash(options.examples) },
  };
  try {
    const trainable = trainableSet(model, scope);
    const state = freshState(trainable, hyper);
    const perEpoch = stepsPerEpoch(rows.length, hyper.batch);
    const total = hyper.epochs * perEpoch;
    let log: LossLog = { epochLoss: [], partialSum: 0, partialSteps: 0 };
    const { checkpoint } = options;
    if (options.resume) {
      if (!checkpoint) throw new Error("tuneFullModel: resume needs a checkpoint path");
      const saved = await readFullTuneState(checkpoint, trainable.layout);
      const difference = firstDifference(saved.run, JSON.parse(JSON.stringify(run)), "");
      if (difference) throw new Error(`Cannot resume "${checkpoint}" with other settings: ${difference}`);
      state.step = saved.step;
      state.params = saved.params;
      state.optimizer.load(saved.optimizer);
      log = saved.log;
    }
    const steps = stepLog(perEpoch, log);
    // The last epoch writes no state: the caller writes the tuned model instead.
    const save = async (s: TuneState): Promise<void> => {
      if (!checkpoint || s.step === total) return;
      await writeFullTuneState(checkpoint, trainable.layout, {
        step: s.step,
        run,
        log: JSON.parse(JSON.stringify(log)),
        params: s.params,
        optimizer: s.optimizer.state(),
      });
    };
    const { stopped } = await train(model, trainable, state, rows, hyper, options, steps, save);
    // Every block trains in full, so assemble() returns the slot tensors themselves: no copy, the caller owns them.
    const { outer, blocks } = trainable.assemble(slotTensors(trainable.layout, state.params));
    const ownOuter = scope.embeddings ? outer : new Map([...outer].map(([name, t]) => [name, t.clone()]));
    return {
      outer: ownOuter,
      blocks,
      step: state.step,
      total,
      stopped,
      epochLoss: steps.log.epochLoss,
      parameters: trainable.layout.size,
      examplesPerSecond: steps.examplesPerSecond(),
    };
  } finally {
    releaseBlocks(model);
  }
}
