/**
 * LoRA (Hu et al. 2021) on the adapter blocks' linears: the option docs/METHOD.md §4
 * adds beyond the seeds. A linear's kernel-layout weight `W` `[in, out]`
 * becomes `W + s · A B` with trainable `A` `[in, r]`, `B` `[r, out]` and the
 * scale `s = α / r`; `W`, the bias and the norms stay frozen (PEFT's
 * `bias="none"`).
 *
 * Initialisation is PEFT's: `A` ~ U(−1/√in, 1/√in) (`kaiming_uniform_` with
 * `a = √5` on the `[r, in]` `nn.Linear` weight), `B = 0`, so an untrained
 * adapter is exactly the base model. Draws come from the seeded {@link Prng}.
 *
 * Saved adapters carry `name.lora_a = A` and `name.lora_b = s · B`, so a
 * reader adds `lora_a · lora_b` without knowing `α` (the adapter package
 * format of src/model/model_source.ts).
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { LinearSpec } from "../model/types.ts";
import { tf } from "../tensor/backend.ts";
import { Prng } from "./prng.ts";

/** LoRA hyper-parameters: rank `r` and `α` (scale `α / r`). */
export interface LoraOptions {
  /** Rank r of the low-rank update. */
  rank: number;
  /** α: the update is scaled by α / r. */
  alpha: number;
}

/** Suffix of the `[in, r]` factor's name (after the linear's name). */
export const LORA_A = ".lora_a";
/** Suffix of the `[r, out]` factor's name. */
export const LORA_B = ".lora_b";

/** The scale `α / r` of the update `s · A B`, after checking both settings. */
export function loraScale(o: LoraOptions): number {
  if (!Number.isInteger(o.rank) || o.rank < 1) throw new Error(`LoRA rank must be a positive integer, got ${o.rank}`);
  if (!(o.alpha > 0) || !Number.isFinite(o.alpha)) throw new Error(`LoRA alpha must be positive, got ${o.alpha}`);
  return o.alpha / o.rank;
}

/** The shapes of a linear's LoRA factors: `A` `[in, r]`, `B` `[r, out]`. */
export function loraShapes(spec: LinearSpec, rank: number): { a: number[]; b: number[] } {
  return { a: [spec.inFeatures, rank], b: [rank, spec.outFeatures] };
}

/**
 * Fresh factors for `spec` (PEFT init, module doc): `A` row-major `[in, r]`
 * uniform in ±1/√in, `B` zeros `[r, out]`.
 */
export function initLoraFactors(spec: LinearSpec, rank: number, prng: Prng): { a: Float32Array; b: Float32Array } {
  const bound = 1 / Math.sqrt(spec.inFeatures);
  const a = Float32Array.from({ length: spec.inFeatures * rank }, () => (2 * prng.uniform() - 1) * bound);
  return { a, b: new Float32Array(rank * spec.outFeatures) };
}

/** The effective weight `W + s · A B` `[in, out]` (differentiable in `A` and `B`). */
export function loraWeight(base: Tensor, a: Tensor, b: Tensor, scale: number): Tensor {
  return tf.tidy(() => tf.add(base, tf.mul(tf.matMul(a, b), scale))); // [in, r]·[r, out] -> [in, out]
}
