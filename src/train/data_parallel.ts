/**
 * Where gradients are computed: in this thread, or data-parallel over a pool
 * of worker threads (docs/DESIGN.md "Scale": one machine, a worker pool).
 *
 * Data parallelism: each of N replicas (src/train/grad_worker.ts) takes a
 * contiguous share of the batch rows; the main thread averages their
 * gradients, weighting each by its share of rows (every row has the same
 * `T − 1` targets, so this is exactly the gradient of the whole batch's mean
 * loss), then clips and applies AdamW itself and publishes the new parameters.
 *
 * Why the main thread updates rather than every replica: the bytes moved are
 * the same either way (gradients in, parameters or averaged gradients out),
 * but a single copy of the optimizer moments (2× the parameters) lives where
 * checkpoints are written, instead of N copies that must stay identical.
 * The update is an element-wise pass, small next to a forward and backward.
 * Parameters and gradients travel through `SharedArrayBuffer`s, not messages:
 * one parameter buffer every replica reads, one gradient slot per replica;
 * messages carry only the token ids and a sequence number.
 *
 * @module
 */
import { currentBackend } from "../tensor/backend.ts";
import { WorkerPool } from "../distributed/worker_pool.ts";
import { sliceBatch, type TokenBatch } from "./batches.ts";
import { batchLoss, lossAndGradients, type TrainModel } from "./gradients.ts";
import type { GradReply, GradRequest } from "./grad_worker.ts";

/** Computes batch losses and gradients at given parameters. */
export interface GradientEngine {
  /** Replicas computing in parallel (0: in this thread). */
  readonly workers: number;
  /** Writes the gradient of the batch's mean loss at `params` into `grads`; resolves with that loss. */
  gradients(params: Float32Array, batch: TokenBatch, grads: Float32Array): Promise<number>;
  /** The batch's mean loss at `params`. */
  loss(params: Float32Array, batch: TokenBatch): Promise<number>;
  /** Releases the workers, if any. */
  close(): Promise<void>;
}

/**
 * An engine computing everything in the calling thread, `microBatch` rows
 * per forward/backward pass (see {@link lossAndGradients}).
 */
export function inProcessEngine(model: TrainModel, microBatch: number): GradientEngine {
  return {
    workers: 0,
    gradients: (params, batch, grads) => Promise.resolve(lossAndGradients(model, params, batch, grads, microBatch)),
    loss: (params, batch) => Promise.resolve(batchLoss(model, params, batch, microBatch)),
    close: () => Promise.resolve(),
  };
}

/** Contiguous row ranges `[from, to)` splitting `rows` over at most `parts` replicas as evenly as possible. */
export function splitRows(rows: number, parts: number): Array<[number, number]> {
  const n = Math.min(rows, parts);
  return Array.from({ length: n }, (_, k) => [Math.floor((k * rows) / n), Math.floor(((k + 1) * rows) / n)]);
}

/**
 * Starts `workers` replicas of `model` (each parses `model.cfg.raw`, the
 * config.json object) and returns an engine over them. The replicas use this
 * thread's tensor backend and run `microBatch` rows per forward/backward pass.
 */
export async function startDataParallel(
  model: TrainModel,
  workers: number,
  microBatch: number,
): Promise<GradientEngine> {
  const size = model.layout.size;
  const paramsBuffer = new SharedArrayBuffer(size * 4);
  const gradsBuffer = new SharedArrayBuffer(workers * size * 4);
  const syncBuffer = new SharedArrayBuffer(4 * (1 + workers));
  const shared = new Float32Array(paramsBuffer);
  const slots = Array.from({ length: workers }, (_, k) => new Float32Array(gradsBuffer, k * size * 4, size));
  const sync = new Int32Array(syncBuffer);
  const pool = await WorkerPool.start<GradRequest, GradReply>(new URL("./grad_worker.ts", import.meta.url), {
    size: workers,
  });
  try {
    const backend = currentBackend();
    await Promise.all(slots.map((_, index) =>
      pool.call(index, {
        kind: "init",
        config: model.cfg.raw,
        backend,
        microBatch,
        index,
        params: paramsBuffer,
        grads: gradsBuffer,
        sync: syncBuffer,
      })
    ));
  } catch (e) {
    await pool.close();
    throw e;
  }

  /** Publishes `params` and asks each replica for its share of `batch`. */
  const scatter = async (kind: "gradients" | "loss", params: Float32Array, batch: TokenBatch) => {
    if (params.length !== size) {
      throw new Error(`Parameter vector holds ${params.length} values, the model has ${size}`);
    }
    shared.set(params);
    const seq = Atomics.add(sync, 0, 1) + 1;
    const parts = splitRows(batch.batch, workers);
    const replies = await Promise.all(parts.map(([from, to], k) => {
      const part = sliceBatch(batch, from, to);
      const ids = part.ids.slice(); // its own buffer, moved to the worker
      return pool.call(k, { kind, seq, ids, batch: part.batch, ctx: part.ctx }, [ids.buffer]);
    }));
    const weights = parts.map(([from, to]) => (to - from) / batch.batch);
    const loss = replies.reduce((sum, r, k) => sum + weights[k] * r.loss, 0);
    return { loss, weights, seq };
  };

  return {
    workers,
    async gradients(params, batch, grads) {
      if (grads.length !== size) throw new Error(`Gradient buffer holds ${grads.length} values, the model has ${size}`);
      const { loss, weights, seq } = await scatter("gradients", params, batch);
      weights.forEach((w, k) => {
        if (Atomics.load(sync, 1 + k) !== seq) throw new Error(`Worker ${k} did not write the gradient of step ${seq}`);
        const slot = slots[k];
        if (k === 0) grads.fill(0);
        for (let i = 0; i < size; i++) grads[i] += w * slot[i];
      });
      return loss;
    },
    async loss(params, batch) {
      return (await scatter("loss", params, batch)).loss;
    },
    close: () => pool.close(),
  };
}
