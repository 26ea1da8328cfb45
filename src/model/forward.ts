/**
 * The whole-model forward and the LM loss (docs/METHOD.md §2: `ℓ` is the LM loss
 * on calibration text; §5 log-likelihood scoring uses the same logits).
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { dimsOf, sameShape } from "./shapes.ts";
import type { Architecture, ModelConfig, WeightMap } from "./types.ts";

/**
 * Logits `[B, T, V]` for token ids `[B, T]` (int32): embed, every block in
 * order, head. All blocks are resident; streaming callers drive
 * `arch.embed/block/head` themselves.
 */
export function forwardLogits(
  arch: Architecture,
  cfg: ModelConfig,
  outer: WeightMap,
  blocks: WeightMap[],
  ids: Tensor,
): Tensor {
  return tf.tidy(() => {
    let h = arch.embed(outer, ids, cfg); // [B, T, d]
    for (const weights of blocks) h = arch.block(weights, h, cfg); // [B, T, d]
    return arch.head(outer, h, cfg); // [B, T, V]
  });
}

/**
 * Mean next-token cross-entropy: position `t`'s logits predict token `t + 1`.
 *
 * `mask` `[B, T]` (any numeric dtype, aligned with `ids`) selects which
 * *target* tokens count (1) or not (0), e.g. answer-only losses; `mask[:, 0]`
 * is never a target. The mean is over the selected targets. Computed as
 * `logSoftmax` times a one-hot of the targets (differentiable on every
 * backend, no gather gradient needed). Returns a scalar.
 *
 * @throws Error when T < 2, or the mask selects no target
 */
export function lmLoss(logits: Tensor, ids: Tensor, mask?: Tensor): Tensor {
  const [b, t, vocab] = dimsOf(logits, 3, "logits [B, T, V]");
  if (t < 2) throw new Error(`The LM loss needs at least 2 tokens per sequence, got ${t}`);
  if (!sameShape(ids.shape, [b, t])) {
    throw new Error(`Token ids [${ids.shape.join(", ")}] do not match logits [${logits.shape.join(", ")}]`);
  }
  if (mask && !sameShape(mask.shape, [b, t])) {
    throw new Error(`Loss mask [${mask.shape.join(", ")}] does not match token ids [${b}, ${t}]`);
  }
  return tf.tidy(() => {
    const n = b * (t - 1);
    const predictions = tf.reshape(tf.slice(logits, [0, 0, 0], [b, t - 1, vocab]), [n, vocab]); // [N, V]
    const targets = tf.reshape(tf.slice(ids, [0, 1], [b, t - 1]), [n]); // [N]
    const logProbs = tf.logSoftmax(predictions); // [N, V]
    const picked = tf.sum(tf.mul(logProbs, tf.oneHot(targets, vocab)), 1); // [N]
    if (!mask) return tf.neg(tf.mean(picked));
    const weights = tf.reshape(tf.cast(tf.notEqual(tf.slice(mask, [0, 1], [b, t - 1]), 0), "float32"), [n]); // [N]
    const count = tf.sum(weights);
    if (count.dataSync()[0] === 0) throw new Error("The loss mask selects no target token (mask[:, 1:] is all zero)");
    return tf.neg(tf.div(tf.sum(tf.mul(picked, weights)), count));
  });
}
