/**
 * Where a fine-tuning step's gradient is computed (docs/DISTRIBUTED.md "How
 * tune and eval use the cores"): in the calling thread, or on `n` slots,
 * `n - 1` worker threads (src/train/tune_worker.ts) and the calling thread,
 * with the pretrainer's data-parallel machinery (src/train/data_parallel.ts
 * `startReplicas`).
 *
 * A step is a list of micro-batches cut by the settings alone
 * (src/train/mc_batches.ts `microBatchesAt`). Each micro-batch's gradient is
 * computed whole by one slot, the same function on the same inputs wherever it
 * runs, and the step's gradient is their sum weighted by answer tokens
 * (`N_j / N`: the step's loss is the mean over its `N` answer tokens), added in
 * micro-batch order by the calling thread ({@link weightedSum}'s one loop). So
 * the gradient, and the tuned adapter, are the same bits for any worker count.
 *
 * @module
 */
import { currentBackend } from "../tensor/backend.ts";
import { addScaled, startReplicas, weightedSum } from "./data_parallel.ts";
import type { AnswerBatch } from "./mc_batches.ts";
import { answerLossAndGradients } from "./tune_loop.ts";
import type { ResidentModel, TrainableSet } from "./tune_params.ts";
import { sharedTuneSetup, type TuneSetup, tuneReplica } from "./tune_replica.ts";

/** Computes a step's loss and gradient from its micro-batches, in this thread or on a pool (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface TuneEngine {
  /** Threads computing micro-batches (1: the calling thread alone). */
  readonly threads: number;
  /**
   * Writes the gradient of the mean answer loss over every micro-batch's
   * answer tokens at `params` into `grads`; resolves with that loss.
   */
  gradients(params: Float32Array, parts: readonly AnswerBatch[], grads: Float32Array): Promise<number>;
  /** Releases the workers, if any. */
  close(): Promise<void>;
}

/** Each micro-batch's share of the step's answer tokens, the weight of its mean loss and gradient: the step's loss is the mean over its answer tokens (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function answerWeights(parts: readonly AnswerBatch[]): number[] {
  const total = parts.reduce((n, p) => n + p.targets.length, 0);
  if (total === 0) throw new Error("A tuning step needs at least one answer token");
  return parts.map((p) => p.targets.length / total);
}

/** The engine computing every micro-batch in the calling thread, one at a time, adding each as the pool's sum does (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function inThreadTuneEngine(model: ResidentModel, trainable: TrainableSet): TuneEngine {
  const scratch = new Float32Array(trainable.layout.size);
  return {
    threads: 1,
    gradients(params, parts, grads) {
      const weights = answerWeights(parts);
      grads.fill(0);
      let loss = 0;
      parts.forEach((part, j) => {
        loss += weights[j] * answerLossAndGradients(model, trainable, params, part, scratch);
        addScaled(grads, weights[j], scratch); // as weightedSum adds slot j: the same bits
      });
      return Promise.resolve(loss);
    },
    close: () => Promise.resolve(),
  };
}

/**
 * The engine of `threads` slots (`threads - 1` workers and this thread; 1:
 * {@link inThreadTuneEngine}) for steps of at most `maxParts` micro-batches
 * (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * @throws Error when `threads` is not a positive integer, or a worker cannot start
 */
export async function startTuneEngine(
  model: ResidentModel,
  trainable: TrainableSet,
  threads: number,
  maxParts: number,
): Promise<TuneEngine> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`Tuning threads must be a positive integer, got ${threads}`);
  if (threads === 1) return inThreadTuneEngine(model, trainable);
  const replicas = await startReplicas<TuneSetup, AnswerBatch>(new URL("./tune_worker.ts", import.meta.url), {
    workers: threads - 1,
    size: trainable.layout.size,
    slots: maxParts,
    setup: sharedTuneSetup(model, trainable, currentBackend()),
    local: { build: tuneReplica, setup: { kind: "resident", model, trainable } },
    routing: "least-busy",
  });
  return {
    threads,
    async gradients(params, parts, grads) {
      const weights = answerWeights(parts);
      const { losses, grads: slots } = await replicas.round("gradients", params, parts);
      weightedSum(slots, weights, grads);
      return losses.reduce((sum, l, j) => sum + weights[j] * l, 0);
    },
    close: () => replicas.close(),
  };
}
