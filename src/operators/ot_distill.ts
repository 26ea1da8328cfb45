/**
 * Offsite-Tuning's distilled emulator (docs/METHOD.md §3, "OT (LayerDrop +
 * distillation)"; Xiao et al. 2023): start from the uniform LayerDrop
 * emulator at the same ratio ({@link layerDropBlocks}) and train its kept
 * middle blocks on calibration text so that the emulator's middle
 * reproduces the original middle's output, the hidden state entering the
 * top adapter blocks. The loss of a batch is
 *
 *     w · ‖h_emu − h_orig‖² / ‖h_orig‖²  +  LM loss of the whole emulator
 *
 * (mean squares over the batch, so the first term is scale-free). Embeddings,
 * adapter blocks, final norm and head are frozen and copied unchanged; only
 * the kept middle blocks train, with the training machinery of `tune`
 * (src/train/: trainable set, AdamW, warmup + cosine, global-norm clipping).
 *
 * The run is a pure function of the seed, settings and calibration set: the
 * rows of step `s` depend on `s` alone, and the state (kept-middle weights,
 * AdamW moments, step, loss log) is saved every {@link OtDistillOptions}
 * `saveEvery` steps and when interrupted beside the output
 * ({@link otDistillStatePath}), so a killed build continues bit for bit.
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * await lastValueFrom(buildOtDistillEmulator(model, { ratio: 0.5, calibration, out: "out/ot-distill" }));
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import type { Tensor } from "@tensorflow/tfjs";
import { concat, defer, from, ignoreElements, map, type Observable, switchMap, tap } from "rxjs";
import { checkpointBoundary } from "../cli/interrupt.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { siblingName } from "../io/atomic.ts";
import type { ShardDtype } from "../io/shard_schema.ts";
import type { WeightMap } from "../model/types.ts";
import { lmLoss } from "../model/forward.ts";
import { blockRole, type CalibrationSet, type ModelHandle, type ShardRecord } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";
import { AdamW } from "../train/adamw.ts";
import { clipGlobalNorm } from "../train/clip.ts";
import { epochOrder } from "../train/mc_batches.ts";
import { optimizerParams, slotTensors } from "../train/params.ts";
import { learningRate, type ScheduleOptions, validateSchedule } from "../train/schedule.ts";
import { readStateFile, type StateFormat, writeStateFile } from "../train/state_file.ts";
import { releaseBlocks, residentModel } from "../train/tune.ts";
import { type ResidentModel, type TrainableSet, trainableSet } from "../train/tune_params.ts";
import { dropBlocks, layerDropBlocks } from "./layer_drop.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import { writeShards } from "./write_shards.ts";

/** The method name an OT distilled emulator's manifest, shards and run results carry. */
export const OT_DISTILL_METHOD = "ot-distill";

/** The distillation settings (the `--distill-*` flags of build-emulator and experiment). */
export interface OtDistillSettings {
  /** Optimizer steps (`--distill-steps`). */
  steps: number;
  /** Peak learning rate of the warmup + cosine schedule (`--distill-lr`). */
  lr: number;
  /** Calibration sequences per step (`--distill-batch`). */
  batch: number;
  /** Weight w of the normalised hidden-state MSE against the LM loss (`--distill-mse-weight`). */
  mseWeight: number;
  /** Seeds the order the calibration sequences are visited in (`--distill-seed`). */
  seed: number;
}

/**
 * Defaults: 48 steps of 4 sequences (three passes over the 64 calibration
 * sequences of the CLI's default), small enough for a 2-core machine; MSE
 * weight 10 because the normalised MSE of a LayerDrop middle is ~0.1 against
 * an LM loss of ~5, so at weight 1 the LM term alone would steer the blocks.
 */
export const OT_DISTILL_DEFAULTS: OtDistillSettings = { steps: 48, lr: 1e-4, batch: 4, mseWeight: 10, seed: 0 };

/** Global-norm clipping threshold of the distillation steps (as tuning's). */
const CLIP_NORM = 1;

/**
 * The distillation settings of `partial` (other keys ignored) completed
 * with {@link OT_DISTILL_DEFAULTS}, checked.
 *
 * @throws Error naming the flag and the value, for a non-positive-integer
 *   step count or batch, a non-positive learning rate, or a negative or
 *   non-finite MSE weight
 */
export function otDistillSettings(partial: Partial<OtDistillSettings> = {}): OtDistillSettings {
  const keys = Object.keys(OT_DISTILL_DEFAULTS) as (keyof OtDistillSettings)[];
  const s = Object.fromEntries(keys.map((k) => [k, partial[k] ?? OT_DISTILL_DEFAULTS[k]])) as unknown as OtDistillSettings;
  if (!Number.isInteger(s.steps) || s.steps < 1) throw new Error(`--distill-steps must be a positive integer, got ${s.steps}`);
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new Error(`--distill-batch must be a positive integer, got ${s.batch}`);
  if (!(Number.isFinite(s.lr) && s.lr > 0)) throw new Error(`--distill-lr must be a positive number, got ${s.lr}`);
  if (!(Number.isFinite(s.mseWeight) && s.mseWeight >= 0)) {
    throw new Error(`--distill-mse-weight must be a non-negative number, got ${s.mseWeight}`);
  }
  if (!Number.isInteger(s.seed)) throw new Error(`--distill-seed must be an integer, got ${s.seed}`);
  return s;
}

/** The warmup + cosine schedule of a distillation run: a tenth of the steps warm up, the cosine decays to zero. */
export function otDistillSchedule(s: OtDistillSettings): ScheduleOptions {
  const schedule = { peak: s.lr, floor: 0, warmup: Math.floor(s.steps / 10), total: s.steps };
  validateSchedule(schedule);
  return schedule;
}

/**
 * The token ids `[b·T]` of step `step`'s batch: sequences `step·b … step·b+b−1`
 * of the run, each epoch visiting the calibration set in its own seeded order
 * (`epochOrder`), so a step's rows depend on the step alone.
 */
export function distillBatchIds(calibration: CalibrationSet, step: number, batch: number, seed: number): Int32Array {
  const { sequences: n, length: t } = calibration;
  const ids = new Int32Array(batch * t);
  const orders = new Map<number, Int32Array>();
  for (let k = 0; k < batch; k++) {
    const visit = step * batch + k;
    const epoch = Math.floor(visit / n);
    if (!orders.has(epoch)) orders.set(epoch, epochOrder(n, seed, epoch));
    const row = orders.get(epoch)![visit % n];
    ids.set(calibration.ids.subarray(row * t, (row + 1) * t), k * t);
  }
  return ids;
}

/** The parts of a distillation loss, each a scalar. */
export interface DistillLossParts {
  /** ‖h_emu − h_orig‖² / ‖h_orig‖² at the top adapter blocks' input. */
  mse: Tensor;
  /** Mean next-token cross-entropy of the emulator. */
  lm: Tensor;
}

/**
 * The two terms of the distillation loss of a batch `ids` `[b, T]`
 * (module doc): `original` runs every block, `emulator` its own blocks
 * (`bottom` adapter blocks first, `top` adapter blocks last in both). The
 * original's middle output is the constant target.
 */
export function distillLossParts(
  original: ResidentModel,
  emulator: { outer: WeightMap; blocks: readonly WeightMap[] },
  split: { bottom: number; top: number },
  ids: Tensor,
): DistillLossParts {
  const { arch, cfg } = original;
  let entry = arch.embed(original.outer, ids, cfg); // [b, T, d]
  for (const w of original.blocks.slice(0, split.bottom)) entry = arch.block(w, entry, cfg); // [b, T, d]
  let target = entry;
  for (const w of original.blocks.slice(split.bottom, original.blocks.length - split.top)) target = arch.block(w, target, cfg); // [b, T, d]
  let h = entry;
  const topFrom = emulator.blocks.length - split.top;
  for (const w of emulator.blocks.slice(split.bottom, topFrom)) h = arch.block(w, h, cfg); // [b, T, d]
  const mse = tf.div(tf.mean(tf.square(tf.sub(h, target))), tf.mean(tf.square(target))); // []
  for (const w of emulator.blocks.slice(topFrom)) h = arch.block(w, h, cfg); // [b, T, d]
  const lm = lmLoss(arch.head(emulator.outer, h, cfg), ids); // []
  return { mse, lm };
}

/**
 * The normalised hidden-state MSE ({@link distillLossParts} `mse`) between
 * an emulator running `emulatorBlocks` in order (e.g. a LayerDrop or
 * distilled package's blocks) and the `original` model, over the whole
 * `calibration` set: how well an emulator's middle stands in for the
 * original's, the quantity distillation lowers.
 */
export function calibrationMse(
  original: ResidentModel,
  emulatorBlocks: readonly WeightMap[],
  split: { bottom: number; top: number },
  calibration: CalibrationSet,
): number {
  return tf.tidy(() => {
    const ids = tf.tensor2d(calibration.ids, [calibration.sequences, calibration.length], "int32"); // [N, T]
    return distillLossParts(original, { outer: original.outer, blocks: emulatorBlocks }, split, ids).mse.dataSync()[0];
  });
}

/** Everything {@link buildOtDistillEmulator} needs besides the model. */
export interface OtDistillOptions extends Partial<OtDistillSettings> {
  /** Fraction of the middle blocks kept, in (0, 1] (LayerDrop's). */
  ratio: number;
  /** The calibration text the distillation trains on. */
  calibration: CalibrationSet;
  /** Package directory to write. */
  out: string;
  /** Stored element type (default float32). */
  dtype?: ShardDtype;
  /** The tokenizer.json the package carries (default: the model directory's own; `writeShards`). */
  tokenizer?: string;
  /**
   * The build's stage events: `read` and `write` timings, a `tune` progress
   * mark per distillation step (steps done of all, with the step's loss and
   * tokens, so reporters show an ETA) and one per shard written.
   */
  events?: StageEvents;
  /** Stops the run at the next step once aborted, saving its state first (src/cli/interrupt.ts). */
  signal?: AbortSignal;
  /** Save the state every this many steps (default 10; 0: only when interrupted). */
  saveEvery?: number;
}

/** The state file of the distillation writing package `out`: `<out>.ot-distill-state.safetensors`. */
export function otDistillStatePath(out: string): string {
  return `${out.replace(/\/+$/, "")}.ot-distill-state.safetensors`;
}

const STATE: StateFormat = { key: "offtune.ot_distill_state", format: "offtune-ot-distill-state", version: 1 };

/** The JSON a state file records besides the vectors. */
interface SavedRun {
  /** Distillation steps completed. */
  step: number;
  /** AdamW's update count (its bias correction's t). */
  optimizerStep: number;
  /** The run's identity: settings, ratio, model and calibration tokens. */
  run: string;
  /** Loss and MSE term of every step so far. */
  losses: number[];
  mses: number[];
}

/** The manifest's summary of a run's loss curve. */
export interface DistillCurve {
  /** The first step's loss (w · MSE + LM), before its update. */
  firstLoss: number;
  /** The last step's loss, before its update. */
  lastLoss: number;
  /** The first step's normalised hidden-state MSE. */
  firstMse: number;
  /** The last step's normalised hidden-state MSE. */
  lastMse: number;
}

/** What a saved state must match to be continued: the model, split, ratio, settings and calibration tokens. */
function runIdentity(model: ModelHandle, settings: OtDistillSettings, ratio: number, calibration: CalibrationSet): string {
  const ids = calibration.ids;
  const tokens = createHash("sha256").update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest("hex");
  return JSON.stringify({ source: model.source, split: model.split, ratio, settings, length: calibration.length, tokens });
}

/** The saved state of the same run at `path`, or undefined when there is none or it belongs to another run. */
async function readSaved(path: string, trainable: TrainableSet, run: string) {
  if (!existsSync(path)) return undefined;
  const saved = await readStateFile<SavedRun>(path, trainable.layout, STATE, "the OT distillation");
  return saved.meta.run === run ? saved : undefined;
}

/** Writes the state to `path` atomically (a temporary sibling, then a rename), as the other training states. */
async function writeSaved(path: string, trainable: TrainableSet, params: Float32Array, optimizer: AdamW, meta: Omit<SavedRun, "optimizerStep">) {
  const temp = siblingName(path, "tmp");
  const { m, v, step } = optimizer.state();
  try {
    await writeStateFile(temp, trainable.layout, { params, m, v }, STATE, { ...meta, optimizerStep: step });
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}

/**
 * Runs the distillation of `model`'s LayerDrop emulator (module doc) and
 * resolves with the kept middle blocks' trained weights by original index
 * and the loss curve, continuing a saved run of the same settings.
 */
async function distil(
  model: ModelHandle,
  blockIndices: readonly number[],
  settings: OtDistillSettings,
  options: OtDistillOptions,
): Promise<{ weights: Map<number, Array<{ name: string; shape: number[]; data: Float32Array }>>; curve: DistillCurve }> {
  if (model.vocabulary) {
    throw new Error(`OT distillation trains through the embeddings and head, so it needs "${model.source}" opened without streamVocabulary`);
  }
  const original = await residentModel(model);
  try {
    const { cfg, split } = model;
    const emulator: ResidentModel = { ...original, blocks: blockIndices.map((i) => original.blocks[i]) };
    const middle = blockIndices.flatMap((i, p) => blockRole(i, cfg.layers, split) === "middle" ? [p] : []);
    const trainable = trainableSet(emulator, { blocks: middle, embeddings: false });
    const schedule = otDistillSchedule(settings);
    const optimizer = new AdamW(optimizerParams(trainable.layout), { weightDecay: 0 });
    const path = otDistillStatePath(options.out);
    const run = runIdentity(model, settings, options.ratio, options.calibration);
    const saved = await readSaved(path, trainable, run);
    const params = saved ? saved.params : trainable.initial(settings.seed);
    if (saved) optimizer.load({ step: saved.meta.optimizerStep, m: saved.m, v: saved.v });
    let step = saved?.meta.step ?? 0;
    const losses = saved ? [...saved.meta.losses] : [];
    const mses = saved ? [...saved.meta.mses] : [];
    const save = () => writeSaved(path, trainable, params, optimizer, { step, run, losses, mses });
    const grads = new Float32Array(trainable.layout.size);
    const { length } = options.calibration;
    const saveEvery = options.saveEvery ?? 10;
    while (step < settings.steps) {
      try {
        await checkpointBoundary(options.signal);
      } catch (e) {
        if (step > 0) await save();
        throw e;
      }
      const started = performance.now();
      const batchIds = distillBatchIds(options.calibration, step, settings.batch, settings.seed);
      const weights = slotTensors(trainable.layout, params);
      let mse = 0;
      let loss: number;
      try {
        loss = tf.tidy(() => {
          const ids = tf.tensor2d(batchIds, [settings.batch, length], "int32"); // [b, T]
          const f = (...w: Tensor[]) => {
            const parts = distillLossParts(original, trainable.assemble(w), split, ids);
            mse = parts.mse.dataSync()[0];
            return tf.add(tf.mul(parts.mse, settings.mseWeight), parts.lm) as tf.Scalar;
          };
          const { value, grads: g } = tf.valueAndGrads(f)(weights);
          trainable.layout.slots.forEach((s, k) => grads.set(g[k].dataSync() as Float32Array, s.offset));
          return value.dataSync()[0];
        });
      } finally {
        tf.dispose(weights);
      }
      if (!Number.isFinite(loss)) throw new Error(`OT distillation loss became ${loss} at step ${step + 1}`);
      clipGlobalNorm(grads, CLIP_NORM);
      const lr = learningRate(step, schedule);
      optimizer.step(params, grads, lr);
      step += 1;
      losses.push(loss);
      mses.push(mse);
      options.events?.next({
        stage: "tune",
        done: step,
        total: settings.steps,
        unit: "steps",
        seconds: (performance.now() - started) / 1000,
        tokens: settings.batch * length,
        loss,
        detail: `distil: mse ${mse.toFixed(4)}, lr ${lr.toExponential(2)}`,
      });
      if (saveEvery > 0 && step % saveEvery === 0 && step < settings.steps) await save();
    }
    const byPosition = trainable.adapterArrays(params);
    const weights = new Map([...byPosition].map(([p, arrays]) => [blockIndices[p as number], arrays]));
    const curve = { firstLoss: losses[0], lastLoss: losses.at(-1)!, firstMse: mses[0], lastMse: mses.at(-1)! };
    return { weights, curve };
  } finally {
    releaseBlocks(original);
  }
}

/**
 * Builds the OT distilled emulator package of `model` in `options.out`:
 * distil (module doc), then read → drop → replace the kept middle blocks'
 * weights → shards. The manifest records method {@link OT_DISTILL_METHOD},
 * settings `ratio`, `keptMiddle`, the distillation settings and the
 * calibration size, the kept blocks in `blockIndices` (as LayerDrop's) and
 * the loss curve in `extra.distillation` ({@link DistillCurve}); the state
 * file is removed once the package is written. Bad settings, or a model
 * opened with a streamed vocabulary (the distillation trains through the
 * embeddings and head, which must be resident), are the observable's
 * error, before any block is read.
 */
export function buildOtDistillEmulator(model: ModelHandle, options: OtDistillOptions): Observable<ShardRecord> {
  return defer(() => {
    const settings = otDistillSettings(options);
    const blockIndices = layerDropBlocks(model.cfg.layers, model.split, options.ratio);
    const keptMiddle = blockIndices.filter((i) => blockRole(i, model.cfg.layers, model.split) === "middle");
    const total = blockIndices.length + 1;
    let written = 0;
    const { calibration, events } = options;
    const built = from(distil(model, blockIndices, settings, options)).pipe(
      switchMap(({ weights, curve }) =>
        readCheckpoint(model, events, options.signal).pipe(
          dropBlocks(blockIndices),
          map((record) => {
            const trained = weights.get(record.index);
            if (!trained) return record;
            tf.dispose([...record.weights.values()]);
            return { ...record, weights: new Map(trained.map((a) => [a.name, tf.tensor(a.data, a.shape, "float32")])) };
          }),
          writeShards(options.out, {
            method: OT_DISTILL_METHOD,
            settings: {
              ratio: options.ratio,
              keptMiddle,
              distillation: { ...settings },
              calibration: { sequences: calibration.sequences, length: calibration.length },
            },
            extra: { distillation: curve },
            dtype: options.dtype,
            blockIndices,
            tokenizer: options.tokenizer,
            events,
          }),
          tap((shard) => events?.next({ stage: "write", done: ++written, total, unit: "shards", seconds: 0, detail: `wrote ${shard.file}` })),
        )
      ),
    );
    return concat(built, defer(() => rm(otDistillStatePath(options.out), { force: true })).pipe(ignoreElements()));
  });
}
