/**
 * ScaleOT's harmonizer (docs/METHOD.md §3 "ScaleOT"): the small trainable
 * block that stands in for a replaced middle block of an emulator, a
 * low-rank residual MLP
 *
 *     y = h + gelu(LN(h) A + a) B + b        A [d, r], B [r, d]
 *
 * stored in the block's shard under the names {@link HARMONIZER_WEIGHTS}
 * (docs/SHARDS.md "Harmonizer shards"). A block whose weights hold them is a
 * harmonizer, whatever the architecture: {@link withHarmonizers} wraps an
 * architecture so its `block` runs harmonizers and delegates every other
 * block, which is how an opened emulator package runs them.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import type { Prng } from "../train/prng.ts";
import { geluNew } from "./gpt2.ts";
import { linear, namedLayerNorm } from "./layers.ts";
import type { Architecture, WeightMap } from "./types.ts";

/** The prefix of every harmonizer weight in a block's shard. */
export const HARMONIZER_PREFIX = "harmonizer.";

/** The harmonizer's weights in a shard: the norm, the down (A) and up (B) linears, in kernel layout. */
export const HARMONIZER_WEIGHTS = {
  normWeight: "harmonizer.norm.weight",
  normBias: "harmonizer.norm.bias",
  downWeight: "harmonizer.down.weight",
  downBias: "harmonizer.down.bias",
  upWeight: "harmonizer.up.weight",
  upBias: "harmonizer.up.bias",
} as const;

/** Whether a block's weights are a harmonizer's (they hold its down projection). */
export function isHarmonizer(weights: WeightMap): boolean {
  return weights.has(HARMONIZER_WEIGHTS.downWeight);
}

/** The shapes of a harmonizer of width `d` and rank `r`, by weight name (6 tensors, `2 r d + r + 3 d` values). */
export function harmonizerShapes(d: number, r: number): Map<string, number[]> {
  const w = HARMONIZER_WEIGHTS;
  return new Map([
    [w.normWeight, [d]],
    [w.normBias, [d]],
    [w.downWeight, [d, r]],
    [w.downBias, [r]],
    [w.upWeight, [r, d]],
    [w.upBias, [d]],
  ]);
}

/** Parameters of a harmonizer of width `d` and rank `r` (what it adds to the emulator's size). */
export function harmonizerParams(d: number, r: number): number {
  return 2 * r * d + r + 3 * d;
}

/**
 * The harmonizer forward `[..., d]` -> `[..., d]` (module doc), with the
 * norm's epsilon `eps` (the model's). Pure tfjs, differentiable.
 */
export function harmonizerForward(weights: WeightMap, h: Tensor, eps: number): Tensor {
  return tf.tidy(() => {
    const normed = namedLayerNorm(weights, "harmonizer.norm", h, eps); // [..., d]
    const hidden = geluNew(linear(weights, "harmonizer.down", normed)); // [..., r]
    return tf.add(h, linear(weights, "harmonizer.up", hidden)); // [..., d]
  });
}

/**
 * A fresh harmonizer of width `d` and rank `r` that is exactly the
 * identity: norm weight 1, `A` drawn `N(0, 1/d)` from `prng`, `B`, `a`, `b`
 * and the norm bias 0 (as LoRA starts at the base model, docs/METHOD.md §4),
 * so training starts from "skip the block". Values as Float32Arrays by name.
 */
export function initHarmonizer(d: number, r: number, prng: Prng): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  for (const [name, shape] of harmonizerShapes(d, r)) values.set(name, new Float32Array(shape.reduce((a, b) => a * b, 1)));
  values.get(HARMONIZER_WEIGHTS.normWeight)!.fill(1);
  const down = values.get(HARMONIZER_WEIGHTS.downWeight)!; // [d, r]
  const scale = 1 / Math.sqrt(d);
  for (let i = 0; i < down.length; i++) down[i] = prng.normal() * scale;
  return values;
}

/**
 * `arch` with a `block` that runs a harmonizer's weights as a harmonizer
 * and any other block as `arch` does, so an emulator whose middle holds
 * harmonizers runs through every consumer of the architecture (evaluation,
 * tuning) unchanged. Probes and input hooks apply to the architecture's own
 * blocks only (the harmonizers are frozen in the emulator).
 */
export function withHarmonizers(arch: Architecture): Architecture {
  return {
    ...arch,
    block: (weights, x, cfg, options) => isHarmonizer(weights) ? harmonizerForward(weights, x, cfg.normEps) : arch.block(weights, x, cfg, options),
  };
}
