/**
 * The fine-tuning loop shared by adapter tuning (docs/METHOD.md §1 step 2, §4)
 * and the Full FT reference (§3): answer-only LM loss on multiple-choice
 * items (src/train/mc_batches.ts), gradients w.r.t. the trainable set only
 * (src/train/tune_params.ts), global-norm clipping and AdamW at a warmup +
 * cosine (or constant) rate, the pretrainer's own pieces. No files: the
 * caller's `onCheckpoint` persists {@link TuneState}.
 *
 * Gradients come from `tf.valueAndGrads` with the trainable tensors as the
 * only inputs: tfjs prunes the tape to paths from those inputs, so frozen
 * weights get no gradient computed; the frozen middle blocks still pass the
 * activation gradient down when bottom blocks train.
 *
 * A run is a pure function of its seed, items and settings: the batch of
 * step `s` depends on `s` alone (src/train/mc_batches.ts), and the state
 * (parameters, AdamW moments, step) is saved whole, so a resumed run matches
 * an uninterrupted one bit for bit on the same backend.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { tf } from "../tensor/backend.ts";
import type { AdamW } from "./adamw.ts";
import { clipGlobalNorm } from "./clip.ts";
import { type AnswerBatch, type AnswerRow, microBatchesAt, stepsPerEpoch } from "./mc_batches.ts";
import { slotTensors } from "./params.ts";
import { learningRate, type ScheduleOptions, validateSchedule } from "./schedule.ts";
import type { ResidentModel, TrainableSet } from "./tune_params.ts";
import { yieldToSignals } from "../cli/interrupt.ts";
import type { TuneEngine } from "./tune_engine.ts";

/** The settings of a fine-tuning run (fixed for its lifetime; a resume must repeat them). */
export interface TuneHyper {
  /** Passes over the items. */
  epochs: number;
  /** Items per optimizer step. */
  batch: number;
  /**
   * Items per forward/backward pass: each step's items are cut into runs of
   * this many (src/train/mc_batches.ts `microBatchesAt`), the unit a worker
   * thread computes; the cut, and so the result, does not depend on the
   * thread count (docs/DISTRIBUTED.md "How tune and eval use the cores").
   */
  microBatch: number;
  /** Peak learning rate. */
  lr: number;
  /** `cosine`: warmup then half-cosine to `minLr`; `constant`: warmup then `lr`. */
  schedule: "cosine" | "constant";
  /** Cosine floor (ignored by `constant`). */
  minLr: number;
  /** Linear warmup steps. */
  warmup: number;
  /** AdamW decoupled weight decay (matrices only, src/train/adamw.ts). */
  weightDecay: number;
  /** Global gradient-norm clipping threshold. */
  clipNorm: number;
  /** Seeds the item order (and LoRA's initial factors). */
  seed: number;
}

/** Fine-tuning defaults: small-batch, few-epoch task tuning (HF Trainer-like: no decay, clip 1). */
export const TUNE_DEFAULTS: TuneHyper = {
  epochs: 3,
  batch: 8,
  microBatch: 4,
  lr: 1e-4,
  schedule: "cosine",
  minLr: 0,
  warmup: 10,
  weightDecay: 0,
  clipNorm: 1,
  seed: 0,
};

/** The complete, resumable state of a run. */
export interface TuneState {
  /** Optimizer steps completed. */
  step: number;
  /** Trainable parameters (flat, the trainable set's layout), updated in place. */
  params: Float32Array;
  optimizer: AdamW;
}

/** One line of the tuning log. */
export interface TuneStepRecord {
  /** Steps completed, after this one. */
  step: number;
  /** Steps of the whole run. */
  total: number;
  /** 0-based epoch this step belongs to. */
  epoch: number;
  /** Mean answer-token loss of this step's batch, before the update. */
  loss: number;
  /** The learning rate this step used. */
  lr: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  /** Items in this step's batch. */
  items: number;
  /** Seconds this step took (batch, gradient, update). */
  seconds: number;
}

/** How {@link runTuning} runs. */
export interface TuneLoopOptions {
  items: readonly AnswerRow[];
  /** Computes each step's gradient from its micro-batches (src/train/tune_engine.ts). */
  engine: TuneEngine;
  padId: number;
  hyper: TuneHyper;
  onStep?: (record: TuneStepRecord) => void | Promise<void>;
  /**
   * Called after the last step of every epoch, and when `shouldStop` ends the
   * run early, with the state to persist and the epochs completed.
   */
  onCheckpoint?: (state: TuneState, epochsDone: number) => void | Promise<void>;
  /** Polled after every step; when true, checkpoint and stop. */
  shouldStop?: () => boolean;
}

/** The learning-rate schedule a run of `items` items follows (its total spans every epoch). */
export function tuneSchedule(hyper: TuneHyper, items: number): ScheduleOptions {
  if (!Number.isInteger(hyper.epochs) || hyper.epochs < 1) {
    throw new Error(`Epochs must be a positive integer, got ${hyper.epochs}`);
  }
  if (!Number.isInteger(hyper.microBatch) || hyper.microBatch < 1) {
    throw new Error(`Micro-batch size must be a positive integer, got ${hyper.microBatch}`);
  }
  const total = hyper.epochs * stepsPerEpoch(items, hyper.batch);
  const schedule = {
    peak: hyper.lr,
    floor: hyper.schedule === "constant" ? hyper.lr : hyper.minLr,
    warmup: Math.min(hyper.warmup, total),
    total,
  };
  validateSchedule(schedule);
  return schedule;
}

/**
 * The mean negative log-likelihood of a batch's answer tokens, from the
 * embeddings through every block to the head, which runs on the answer
 * positions only (`[N, d]`, as the scorer does): the head is position-wise
 * (final norm + LM head), and the `[B, T, V]` logits of every position
 * would cost more than the blocks for a 6k vocabulary. Equals
 * `lmLoss(forwardLogits(…), ids, mask)` with the mask on the answer tokens.
 */
export function answerLoss(
  arch: Architecture,
  cfg: ModelConfig,
  outer: WeightMap,
  blocks: readonly WeightMap[],
  batch: AnswerBatch,
): tf.Scalar {
  return tf.tidy(() => {
    const n = batch.targets.length;
    let h = arch.embed(outer, tf.tensor2d(batch.ids, [batch.rows, batch.length], "int32"), cfg); // [B, T, d]
    for (const weights of blocks) h = arch.block(weights, h, cfg); // [B, T, d]
    const flat = tf.reshape(h, [batch.rows * batch.length, cfg.hidden]); // [B·T, d]
    const picked = tf.gather(flat, tf.tensor1d(batch.positions, "int32")); // [N, d]
    const logits = arch.head(outer, tf.reshape(picked, [1, n, cfg.hidden]), cfg); // [1, N, V]
    const vocab = logits.shape[2]!;
    const logProbs = tf.logSoftmax(tf.reshape(logits, [n, vocab])); // [N, V]
    const target = tf.sum(tf.mul(logProbs, tf.oneHot(tf.tensor1d(batch.targets, "int32"), vocab)), 1); // [N]
    return tf.neg(tf.mean(target)) as tf.Scalar;
  });
}

/**
 * Writes ∂ℓ/∂θ of the batch's answer loss ({@link answerLoss}) w.r.t. the
 * trainable parameters into `grads` (flat, the set's layout) and returns ℓ.
 */
export function answerLossAndGradients(
  model: ResidentModel,
  trainable: TrainableSet,
  params: Float32Array,
  batch: AnswerBatch,
  grads: Float32Array,
): number {
  const { layout } = trainable;
  const weights = slotTensors(layout, params);
  try {
    return tf.tidy(() => {
      const loss = (...w: Tensor[]) => {
        const { outer, blocks } = trainable.assemble(w);
        return answerLoss(model.arch, model.cfg, outer, blocks, batch);
      };
      const { value, grads: g } = tf.valueAndGrads(loss)(weights);
      layout.slots.forEach((s, k) => grads.set(g[k].dataSync() as Float32Array, s.offset));
      return value.dataSync()[0];
    });
  } finally {
    tf.dispose(weights);
  }
}

/**
 * Runs steps `state.step + 1 …` to the end of the last epoch (or until
 * `shouldStop`), mutating `state`. Resolves with whether it stopped early.
 */
export async function runTuning(
  trainable: TrainableSet,
  state: TuneState,
  o: TuneLoopOptions,
): Promise<{ stopped: boolean }> {
  const schedule = tuneSchedule(o.hyper, o.items.length);
  const perEpoch = stepsPerEpoch(o.items.length, o.hyper.batch);
  if (state.params.length !== trainable.layout.size) {
    throw new Error(`Tuning state holds ${state.params.length} parameters, the trainable set has ${trainable.layout.size}`);
  }
  const grads = new Float32Array(trainable.layout.size);
  while (state.step < schedule.total) {
    const started = performance.now();
    const parts = microBatchesAt(o.items, state.step, o.hyper.batch, o.hyper.microBatch, o.hyper.seed, o.padId);
    const loss = await o.engine.gradients(state.params, parts, grads);
    if (!Number.isFinite(loss)) throw new Error(`Tuning loss became ${loss} at step ${state.step + 1}`);
    const gradNorm = clipGlobalNorm(grads, o.hyper.clipNorm);
    const lr = learningRate(state.step, schedule);
    state.optimizer.step(state.params, grads, lr);
    const epoch = Math.floor(state.step / perEpoch);
    state.step += 1;
    await o.onStep?.({
      step: state.step,
      total: schedule.total,
      epoch,
      loss,
      lr,
      grad_norm: gradNorm,
      items: parts.reduce((n, p) => n + p.rows, 0),
      seconds: (performance.now() - started) / 1000,
    });
    if (o.shouldStop) await yieldToSignals(); // a pending SIGINT/SIGTERM sets what shouldStop reads
    const stop = state.step < schedule.total && (o.shouldStop?.() ?? false);
    if (stop || state.step % perEpoch === 0) await o.onCheckpoint?.(state, Math.floor(state.step / perEpoch));
    if (stop) return { stopped: true };
  }
  return { stopped: false };
}
