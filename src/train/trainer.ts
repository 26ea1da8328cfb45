/**
 * The pretraining loop: sample a batch, compute loss and gradient, clip to
 * global norm, update with AdamW at the scheduled rate, evaluate now and
 * then, and hand a consistent state to a checkpoint callback. No files and no
 * printing here (docs/DESIGN.md "Which way imports run"): the caller's callbacks
 * write logs and checkpoints.
 *
 * Everything that decides a later step lives in {@link TrainState}
 * (parameters, optimizer moments and step count, sampler PRNG word), so a run
 * restored from a saved state continues bit-exactly as if never stopped.
 *
 * @module
 */
import type { AdamW } from "./adamw.ts";
import type { TokenBatch, WindowSampler } from "./batches.ts";
import { clipGlobalNorm } from "./clip.ts";
import type { GradientEngine } from "./data_parallel.ts";
import { learningRate, type ScheduleOptions } from "./schedule.ts";
import { yieldToSignals } from "../cli/interrupt.ts";

/** The complete, resumable state of a run. */
export interface TrainState {
  /** Steps completed. */
  step: number;
  /** Training tokens consumed so far. */
  tokens: number;
  /** Training seconds so far (summed over resumed sessions). */
  seconds: number;
  /** Flat parameters, updated in place. */
  params: Float32Array;
  optimizer: AdamW;
  sampler: WindowSampler;
}

/** One line of the training log. */
export interface StepRecord {
  /** The step just taken (1-based). */
  step: number;
  /** Training tokens seen after it. */
  tokens: number;
  /** Training loss of this step's batch, before the update. */
  loss: number;
  /** Learning rate of this step. */
  lr: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  /** Validation loss after the update, on evaluation steps. */
  val_loss?: number;
  /** Training tokens per second over this session. */
  tokens_per_s: number;
  /** Wall seconds of training so far, over all sessions. */
  seconds: number;
}

/** How {@link train} runs. */
export interface TrainOptions {
  engine: GradientEngine;
  schedule: ScheduleOptions;
  /** Global-norm clipping threshold (1.0 for pretraining). */
  clipNorm: number;
  /** Stop after this step (≤ `schedule.total`); the schedule still spans `schedule.total`. */
  until: number;
  /** Fixed validation windows, evaluated every `evalEvery` steps and at `until`. */
  validation?: TokenBatch;
  evalEvery: number;
  /** Call `onCheckpoint` every `saveEvery` steps and at `until` (0: only at `until`). */
  saveEvery: number;
  onStep?: (record: StepRecord) => void | Promise<void>;
  onCheckpoint?: (state: TrainState) => void | Promise<void>;
  /** Polled after every step; when true, checkpoint and stop early. */
  shouldStop?: () => boolean;
}

/** Runs steps `state.step + 1 … until`, mutating `state`. Resolves with the last record (if any step ran). */
export async function train(state: TrainState, o: TrainOptions): Promise<StepRecord | undefined> {
  if (!Number.isInteger(o.until) || o.until > o.schedule.total) {
    throw new Error(`Stop step ${o.until} must be an integer no larger than the ${o.schedule.total} total steps`);
  }
  const grads = new Float32Array(state.params.length);
  const sessionStart = performance.now();
  const sessionTokens = state.tokens;
  let last: StepRecord | undefined;
  while (state.step < o.until) {
    const stepStart = performance.now();
    const batch = state.sampler.next();
    const loss = await o.engine.gradients(state.params, batch, grads);
    if (!Number.isFinite(loss)) throw new Error(`Training loss became ${loss} at step ${state.step + 1}`);
    const gradNorm = clipGlobalNorm(grads, o.clipNorm);
    const lr = learningRate(state.step, o.schedule);
    state.optimizer.step(state.params, grads, lr);
    state.step += 1;
    state.tokens += batch.batch * batch.ctx;
    state.seconds += (performance.now() - stepStart) / 1000;
    if (o.shouldStop) await yieldToSignals(); // a pending SIGINT/SIGTERM sets what shouldStop reads
    const stop = state.step === o.until || (o.shouldStop?.() ?? false);
    let valLoss: number | undefined;
    if (o.validation && (state.step % o.evalEvery === 0 || stop)) {
      const evalStart = performance.now();
      valLoss = await o.engine.loss(state.params, o.validation);
      state.seconds += (performance.now() - evalStart) / 1000;
    }
    const elapsed = (performance.now() - sessionStart) / 1000;
    last = {
      step: state.step,
      tokens: state.tokens,
      loss,
      lr,
      grad_norm: gradNorm,
      ...(valLoss === undefined ? {} : { val_loss: valLoss }),
      tokens_per_s: (state.tokens - sessionTokens) / elapsed,
      seconds: state.seconds,
    };
    await o.onStep?.(last);
    if (stop || (o.saveEvery > 0 && state.step % o.saveEvery === 0)) await o.onCheckpoint?.(state);
    if (stop) break;
  }
  return last;
}
