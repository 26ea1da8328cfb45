/**
 * Vector-Jacobian products for a streamed backward, one block resident at a
 * time (docs/DESIGN.md "The shape", `calibrateBackward`: recompute the block, VJP from the
 * upstream gradient, emit per-linear statistics; docs/METHOD.md §2: `g = ∂ℓ/∂W`,
 * and γ = ∂ℓ/∂y from zero probes at the linear outputs).
 *
 * Chaining {@link headLossGrad} on the last block's output and then
 * {@link blockVjp} from the last block down gives exactly the gradients of the
 * LM loss (test/model checks them against torch autograd).
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { lmLoss } from "./forward.ts";
import type { Architecture, BlockOptions, ModelConfig, WeightMap } from "./types.ts";
import { streamedLmLossGrad, type VocabularyRows } from "./vocabulary.ts";

/** Options of {@link blockVjp}: the block options plus which weights to differentiate. */
export interface BlockVjpOptions extends BlockOptions {
  /** Weight names to return gradients for; default all of the block's weights, `[]` for none. */
  wrt?: string[];
}

/** The result of {@link blockVjp}; the caller owns (and disposes) every tensor. */
export interface BlockVjpResult {
  /** `∂<block(x), dy>/∂x`, `[B, T, d]`: the upstream gradient for the block below. */
  dx: Tensor;
  /** `∂<block(x), dy>/∂W` per requested weight, in kernel layout. */
  dWeights: Map<string, Tensor>;
  /** `∂<block(x), dy>/∂probe` per probe, `[B, T, out]` (γ), when probes were given. */
  dProbes?: Map<string, Tensor>;
}

/**
 * The VJP of one block: recomputes `block(x)` under `tf.grads` and returns the
 * gradients of `<block(x), dy>` w.r.t. the input, the weights in `wrt` and the
 * probes. `onLinearInput` runs during the recomputed forward, so KFAC's `A`
 * and `G` can be gathered in the same pass. With `replay` (the calibration
 * forward's stored linear outputs) the recomputed forward skips the linears'
 * products; `wrt` must then be empty.
 *
 * @param x block input `[B, T, d]`
 * @param dy gradient of the loss at the block output `[B, T, d]`
 */
export function blockVjp(
  arch: Architecture,
  cfg: ModelConfig,
  weights: WeightMap,
  x: Tensor,
  dy: Tensor,
  options: BlockVjpOptions = {},
): BlockVjpResult {
  const names = options.wrt ?? [...weights.keys()];
  if (options.replay && names.length > 0) {
    throw new Error("blockVjp: replayed linears give no weight gradients: pass wrt: [] with replay");
  }
  const wrt = names.map((name) => {
    const w = weights.get(name);
    if (!w) throw new Error(`Cannot differentiate block weight "${name}": the block has no such weight`);
    return w;
  });
  const probeNames = [...(options.probes?.keys() ?? [])];
  const probes = probeNames.map((name) => options.probes!.get(name)!);
  const blockOptions: BlockOptions = { probes: options.probes, onLinearInput: options.onLinearInput, replay: options.replay };
  const grads = tf.grads(() => arch.block(weights, x, cfg, blockOptions))([x, ...wrt, ...probes], dy);
  const dWeights = new Map(names.map((name, j) => [name, grads[1 + j]]));
  const result: BlockVjpResult = { dx: grads[0], dWeights };
  if (options.probes) {
    result.dProbes = new Map(probeNames.map((name, j) => [name, grads[1 + names.length + j]]));
  }
  return result;
}

/**
 * The head's VJP for the LM loss: `loss = lmLoss(head(hidden), ids, mask)` and
 * `dHidden = ∂loss/∂hidden` `[B, T, d]`, where `hidden` is the last block's
 * output. The caller owns `dHidden`.
 */
export function headLossGrad(
  arch: Architecture,
  cfg: ModelConfig,
  outer: WeightMap,
  hidden: Tensor,
  ids: Tensor,
  mask?: Tensor,
): { loss: number; dHidden: Tensor } {
  const { value, grads } = tf.valueAndGrads((h: Tensor) => lmLoss(arch.head(outer, h, cfg), ids, mask))([hidden]);
  const loss = value.dataSync()[0];
  value.dispose();
  return { loss, dHidden: grads[0] };
}

/**
 * {@link headLossGrad} with the head matrix streamed from the checkpoint
 * (`src/model/vocabulary.ts`), for the *summed* loss over the chunk's target
 * tokens: the final norm runs on the tensor backend, the vocabulary
 * projection and softmax in vocabulary chunks on JS arrays, then the norm's
 * VJP takes the gradient back to `hidden`. No mask: every position but each
 * sequence's last has a target. The caller owns `dHidden`.
 *
 * @param hidden the last block's output `[n, T, d]`
 * @param ids the chunk's token ids `[n·T]`, row-major
 */
export function streamedHeadLossGrad(
  arch: Architecture,
  cfg: ModelConfig,
  outer: WeightMap,
  head: VocabularyRows,
  hidden: Tensor,
  ids: Int32Array,
): { lossSum: number; dHidden: Tensor } {
  const [n, t, d] = hidden.shape as [number, number, number];
  if (ids.length !== n * t) throw new Error(`streamedHeadLossGrad: ${ids.length} token ids for ${n} x ${t} positions`);
  const normedTensor = tf.tidy(() => arch.headNorm(outer, hidden, cfg)); // [n, T, d]
  const normed = normedTensor.dataSync() as Float32Array;
  normedTensor.dispose();
  const rows = n * (t - 1);
  const h = new Float32Array(rows * d); // [n·(T-1), d]: the positions with a target
  const targets = new Int32Array(rows);
  for (let s = 0; s < n; s++) {
    h.set(normed.subarray(s * t * d, (s * t + t - 1) * d), s * (t - 1) * d);
    targets.set(ids.subarray(s * t + 1, (s + 1) * t), s * (t - 1));
  }
  const { lossSum, dh } = streamedLmLossGrad({ rows, cols: d, data: h }, targets, head);
  const dNormed = new Float32Array(n * t * d); // [n, T, d]; zero at each sequence's last position
  for (let s = 0; s < n; s++) dNormed.set(dh.data.subarray(s * (t - 1) * d, (s + 1) * (t - 1) * d), s * t * d);
  const upstream = tf.tensor3d(dNormed, [n, t, d]);
  try {
    const [dHidden] = tf.grads((x: Tensor) => arch.headNorm(outer, x, cfg))([hidden], upstream);
    return { lossSum, dHidden };
  } finally {
    upstream.dispose();
  }
}
