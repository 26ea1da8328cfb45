/**
 * The language-modelling loss of a batch and its gradient with respect to
 * every parameter, on flat vectors (src/train/params.ts): the one numeric core
 * that the in-process and the data-parallel trainers share.
 *
 * The gradient comes from `tf.valueAndGrads` through `forwardLogits` and
 * `lmLoss` (mean next-token cross-entropy over the batch's `B·(T−1)`
 * targets), with the weights as plain tensors made from the flat vector, so
 * no tfjs variables outlive a call.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { peekValues } from "../tensor/heap_view.ts";
import { forwardLogits, lmLoss } from "../model/forward.ts";
import { architectureFor } from "../model/registry.ts";
import type { Architecture, ModelConfig } from "../model/types.ts";
import { sliceBatch, type TokenBatch } from "./batches.ts";
import { groupWeights, type ParamLayout, paramLayout, slotTensors } from "./params.ts";

/** An architecture, its parsed config and its flat layout: what training needs to know of a model. */
export interface TrainModel {
  arch: Architecture;
  cfg: ModelConfig;
  layout: ParamLayout;
}

/** The {@link TrainModel} of a Hugging Face `config.json` object. */
export function trainModel(config: Record<string, unknown>): TrainModel {
  const modelType = config.model_type;
  if (typeof modelType !== "string") throw new Error(`Invalid config.json: missing "model_type"`);
  const arch = architectureFor(modelType);
  const cfg = arch.parseConfig(config);
  return { arch, cfg, layout: paramLayout(arch, cfg) };
}

/** The batch as consecutive chunks of at most `microBatch` rows. */
function chunks(batch: TokenBatch, microBatch: number): TokenBatch[] {
  if (!Number.isInteger(microBatch) || microBatch < 1) {
    throw new Error(`Micro-batch size must be a positive integer, got ${microBatch}`);
  }
  const out: TokenBatch[] = [];
  for (let from = 0; from < batch.batch; from += microBatch) {
    out.push(sliceBatch(batch, from, Math.min(from + microBatch, batch.batch)));
  }
  return out;
}

function idsTensor(model: TrainModel, batch: TokenBatch): Tensor {
  if (batch.ctx > model.cfg.maxPositions) {
    throw new Error(`Context ${batch.ctx} exceeds the model's ${model.cfg.maxPositions} positions`);
  }
  return tf.tensor2d(batch.ids, [batch.batch, batch.ctx], "int32"); // [B, T]
}

/**
 * Writes ∂loss/∂θ for the batch into `grads` (flat, layout order) and returns
 * the loss, with θ = `params`.
 *
 * The batch is processed `microBatch` rows at a time and the results summed
 * on the tensor backend, each chunk's loss weighted by its share of rows
 * (every row has `T − 1` targets, so this is exactly the whole batch's mean),
 * and read out once: the backward pass keeps every
 * activation of a chunk alive, and the `[rows, T, V]` logits and their
 * gradients alone would outgrow the 4 GiB wasm heap at a few dozen rows.
 */
export function lossAndGradients(
  model: TrainModel,
  params: Float32Array,
  batch: TokenBatch,
  grads: Float32Array,
  microBatch = batch.batch,
): number {
  const { arch, cfg, layout } = model;
  if (grads.length !== layout.size) {
    throw new Error(`Gradient buffer holds ${grads.length} values, the model has ${layout.size}`);
  }
  const weights = slotTensors(layout, params);
  const sums: Tensor[] = []; // per slot, Σ over chunks of share · ∂loss/∂θ, on the backend
  try {
    let total = 0;
    const parts = chunks(batch, microBatch);
    for (const chunk of parts) {
      const share = chunk.batch / batch.batch;
      total += tf.tidy(() => {
        const ids = idsTensor(model, chunk); // [b, T]
        const loss = (...w: Tensor[]) => {
          const { outer, blocks } = groupWeights(layout, w);
          const mean = lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids) as tf.Scalar;
          return parts.length === 1 ? mean : tf.mul(mean, share) as tf.Scalar;
        };
        const { value, grads: g } = tf.valueAndGrads(loss)(weights);
        g.forEach((gk, k) => {
          const previous = sums[k];
          sums[k] = tf.keep(previous ? tf.add(previous, gk) : gk);
          previous?.dispose();
        });
        return value.dataSync()[0];
      });
    }
    layout.slots.forEach((s, k) => grads.set(peekValues(sums[k]), s.offset)); // each view read at once
    return total;
  } finally {
    tf.dispose([...weights, ...sums]);
  }
}

/**
 * The mean next-token loss of the batch at θ = `params` (forward only,
 * `microBatch` rows at a time). `keepBlocks` runs only those blocks, in
 * order: the loss of a LayerDrop model made from the same weights, as
 * pretraining tracks it (fixtures/README.md "base").
 */
export function batchLoss(
  model: TrainModel,
  params: Float32Array,
  batch: TokenBatch,
  microBatch = batch.batch,
  keepBlocks?: readonly number[],
): number {
  const { arch, cfg, layout } = model;
  const weights = slotTensors(layout, params);
  const grouped = groupWeights(layout, weights);
  const outer = grouped.outer;
  const blocks = keepBlocks === undefined ? grouped.blocks : keepBlocks.map((i) => {
    const block = grouped.blocks[i];
    if (block === undefined) throw new RangeError(`Block ${i} is not among the model's ${grouped.blocks.length} blocks`);
    return block;
  });
  try {
    return chunks(batch, microBatch).reduce(
      (total, chunk) =>
        total +
        (chunk.batch / batch.batch) *
          tf.tidy(() => {
            const ids = idsTensor(model, chunk); // [b, T]
            return lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids).dataSync()[0];
          }),
      0,
    );
  } finally {
    tf.dispose(weights);
  }
}
