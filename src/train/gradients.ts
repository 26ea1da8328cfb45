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
import { forwardLogits, lmLoss } from "../model/forward.ts";
import { architectureFor } from "../model/registry.ts";
import type { Architecture, ModelConfig } from "../model/types.ts";
import type { TokenBatch } from "./batches.ts";
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

function idsTensor(model: TrainModel, batch: TokenBatch): Tensor {
  if (batch.ctx > model.cfg.maxPositions) {
    throw new Error(`Context ${batch.ctx} exceeds the model's ${model.cfg.maxPositions} positions`);
  }
  return tf.tensor2d(batch.ids, [batch.batch, batch.ctx], "int32"); // [B, T]
}

/**
 * Writes ∂loss/∂θ for the batch into `grads` (flat, layout order) and returns
 * the loss, with θ = `params`.
 */
export function lossAndGradients(
  model: TrainModel,
  params: Float32Array,
  batch: TokenBatch,
  grads: Float32Array,
): number {
  const { arch, cfg, layout } = model;
  if (grads.length !== layout.size) {
    throw new Error(`Gradient buffer holds ${grads.length} values, the model has ${layout.size}`);
  }
  return tf.tidy(() => {
    const ids = idsTensor(model, batch); // [B, T]
    const weights = slotTensors(layout, params);
    const loss = (...w: Tensor[]) => {
      const { outer, blocks } = groupWeights(layout, w);
      return lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids) as tf.Scalar;
    };
    const { value, grads: g } = tf.valueAndGrads(loss)(weights);
    layout.slots.forEach((s, k) => grads.set(g[k].dataSync() as Float32Array, s.offset));
    return value.dataSync()[0];
  });
}

/** The mean next-token loss of the batch at θ = `params` (forward only). */
export function batchLoss(model: TrainModel, params: Float32Array, batch: TokenBatch): number {
  const { arch, cfg, layout } = model;
  return tf.tidy(() => {
    const ids = idsTensor(model, batch); // [B, T]
    const { outer, blocks } = groupWeights(layout, slotTensors(layout, params));
    return lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids).dataSync()[0];
  });
}
