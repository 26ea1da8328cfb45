/**
 * A ReLU MLP's channel products: the one statistic SCP's two first-order
 * terms need when the MLP's channels are `h = relu(y₁)`, `y₁ = x̃ W̃₁` the
 * channel producer's (fc1's) output and `h` the consumer's (fc2's) input
 * (docs/GRADOT.md "SCP's first-order terms"; docs/METHOD.md §2 SCP):
 *
 *     c_j = mean_t h_tj γ₁,tj       h [N, m],  γ₁ = ∂(Σ_s ℓ_s)/∂y₁ [N, m] (fc1's KFAC γ)
 *
 * Producer: `g₁[:,j]·w̃₁ⱼ = mean_t γ₁,tj (x̃_t·w̃₁ⱼ) = mean_t γ₁,tj y₁,tj`
 * for any linear; ReLU passes no gradient where `y₁,tj ≤ 0` and `h = y₁`
 * elsewhere, so it is `c_j`. Consumer: `g₂[j,:]·w₂ⱼ = mean_t h_tj ∂ℓ/∂h_tj`
 * for any linear; where `h_tj > 0`, `∂ℓ/∂h_tj = γ₁,tj`, and elsewhere
 * `h_tj = 0`, so it is `c_j` too. One `[m]` sum (n·m multiply-adds a
 * chunk) thus stands for the gradients `g₁` `[d+1, m]` and `g₂` `[m, d]`
 * (2·n·(d+1)·m). The scaling is KFAC's (`src/stats/kfac.ts`): `γ₁` is the
 * summed-loss gradient, the mean is over the N tokens, so `c` belongs to
 * the mean calibration loss as `g` does.
 *
 * Not for GELU or SwiGLU MLPs: there `h ≠ y₁` where `γ₁ ≠ 0` (GELU is
 * neither 0 nor the identity; SwiGLU's `h` is `silu(gate) · up`), so the
 * consumer term needs `∂ℓ/∂h`, which only a probe at the down projection's
 * input would give; those MLPs keep the gradient `g`.
 *
 * The sums are float64: JavaScript multiplies and adds in double anyway (a
 * float32 sum would need a rounding per step, and lose digits over
 * thousands of tokens), the product of two float32 values is exact in
 * double, and the sum is 8 bytes a channel (24 KiB at m = 3072). Tokens are
 * added in the order given, so chunks added in chunk order give the same
 * bits on every path that sums them.
 *
 * @module
 */
import { checkShape, type Matrix } from "../linalg/matrix.ts";

/** Running sum of a ReLU MLP's channel products; updated in place by {@link accumulateChannelProducts}. */
export interface ChannelProductState {
  /** `Σ_t h_tj γ₁,tj`, `[m]`. */
  readonly sum: Float64Array;
  /** Tokens added so far (-1 once finalized). */
  tokens: number;
}

/** A ReLU MLP's finalized channel products (module doc). */
export interface ChannelProducts {
  /** `c_j = mean_t h_tj γ₁,tj`, `[m]`: SCP's producer and consumer first-order terms alike. */
  mean: Float64Array;
  /** Number of calibration tokens N. */
  tokens: number;
}

/**
 * Adds one chunk of tokens: `h` `[n, m]` (the consumer's input, one row per
 * token) and `gamma` `[n, m]` (the producer's output gradient, times
 * `gradScale` the summed-loss gradient, as KFAC's `gradScale`). Pass
 * `undefined` as `state` for the first chunk; the state is updated in place
 * and returned.
 *
 * @throws Error when the shapes disagree, `gradScale` is not a positive finite number, or the state was finalized
 */
export function accumulateChannelProducts(
  state: ChannelProductState | undefined,
  h: Matrix,
  gamma: Matrix,
  gradScale = 1,
): ChannelProductState {
  checkShape(h, "channel products' consumer input h");
  checkShape(gamma, "channel products' producer output gradient gamma");
  if (h.rows !== gamma.rows || h.cols !== gamma.cols) {
    throw new Error(`Channel products: the consumer input h is [${h.rows}, ${h.cols}] but the producer output gradient gamma is [${gamma.rows}, ${gamma.cols}]`);
  }
  if (!(Number.isFinite(gradScale) && gradScale > 0)) {
    throw new Error(`Channel products: gradScale must be a positive finite number, got ${gradScale}`);
  }
  if (state && state.tokens < 0) throw new Error("Channel products were already finalized");
  const s = state ?? { sum: new Float64Array(h.cols), tokens: 0 };
  const m = s.sum.length;
  if (h.cols !== m) throw new Error(`Channel products: the chunk has ${h.cols} channels but the sum was started for ${m}`);
  const { sum } = s;
  const hs = h.data;
  const gs = gamma.data;
  for (let t = 0; t < h.rows; t++) {
    const row = t * m;
    for (let j = 0; j < m; j++) sum[j] += hs[row + j] * gs[row + j] * gradScale;
  }
  s.tokens += h.rows;
  return s;
}

/**
 * The mean over the tokens added (in place: the state is consumed, and
 * adding to or finalizing it again is an error).
 *
 * @throws Error when no token was added or a product is not finite
 */
export function finalizeChannelProducts(state: ChannelProductState): ChannelProducts {
  const n = state.tokens;
  if (n < 0) throw new Error("Channel products were already finalized");
  if (n === 0) throw new Error("Cannot finalize channel products: no tokens were added");
  const mean = state.sum;
  for (let j = 0; j < mean.length; j++) {
    mean[j] /= n;
    if (!Number.isFinite(mean[j])) {
      throw new Error(`Channel products have a non-finite entry ${mean[j]} at channel ${j}: check the calibration inputs and gradients`);
    }
  }
  state.tokens = -1;
  return { mean, tokens: n };
}
