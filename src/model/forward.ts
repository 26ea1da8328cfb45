/**
 * The whole-model forward and the LM loss (docs/METHOD.md §2: `ℓ` is the LM loss
 * on calibration text; §5 log-likelihood scoring uses the same logits).
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";
import { gatherRowsInto } from "../tensor/wasm_gather.ts";
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
 * is never a target. The mean is over the selected targets. Returns a scalar.
 *
 * One fused op with its own gradient (`tf.customGrad`), on any backend. The
 * rows that have a target go through the backend's `Softmax` kernel (on
 * wasm XNNPACK's vectorised one, about 1 ns a logit against 10 for
 * `Math.exp` in JS; relative error of `p` under 3e-6): all `B·T` rows when
 * at least half have a target (pretraining: all but each sequence's last),
 * with no gather, the gradient being the product's own output with the
 * targets subtracted in place (a `[B·T, V]` copy less each way, about 1.3%
 * of a pretraining step); else (answer-only tuning losses) the kept rows
 * gathered into `[k, V]` first. A row's values are the same either way.
 * The loss is `−log p_target` per row, summed in float64 with the row's
 * weight, and taken exactly (`max + log Σ exp(l − max) − l_target` in
 * float64) for a row whose `p_target` is not a normal float32; the gradient
 * is `(p − onehot(target)) · w / W` (`w` the row's weight, `W` their sum),
 * zero on rows without a target. The tape's `logSoftmax`, one-hot product,
 * slice and their gradients were a third of a pretraining step on the
 * fixtures/base shape, the same loss with `Math.exp` a seventh
 * (fixtures/README.md "base").
 *
 * @throws Error when T < 2, the mask selects no target, or a target id is
 *   outside the vocabulary
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
  const { targets, weights, total } = lossTargets(ids, mask, b, t, vocab);
  const kept = targetRows(weights); // [k]: the rows with a target, in order
  const dense = 2 * kept.length >= b * t; // softmax every row rather than gather the kept ones
  const rowOf = dense ? kept : Int32Array.from(kept.keys()); // kept row i's row in the softmax input
  const shape = [b, t, vocab];
  const fused = tf.customGrad((...args) => {
    const [x, save] = args as [Tensor, tf.GradSaveFunc];
    const input = dense
      ? tf.reshape(x, [b * t, vocab]) // [B·T, V], a view
      : filledTensor([kept.length, vocab], (out) => gatherRowsInto(peekValues(x), b * t, vocab, kept, out)); // [B·T, V] rows into [k, V]
    const p = tf.softmax(input); // [B·T or k, V]
    input.dispose();
    const probs = peekValues(p);
    let lossSum = 0;
    kept.forEach((r, i) => {
      const pt = probs[rowOf[i] * vocab + targets[r]];
      lossSum += weights[r] * (pt >= MIN_NORMAL_FLOAT32 ? -Math.log(pt) : exactRowLoss(peekValues(x), r, vocab, targets[r]));
    });
    save([p]);
    return {
      value: tf.scalar(lossSum / total),
      gradFunc: (dy, saved) => {
        const scale = (dy as Tensor).dataSync()[0] / total;
        const rowScale = Float32Array.from(kept, (r) => scale * weights[r]); // [k]
        const inputRowScale = dense ? spreadRows(rowScale, kept, b * t) : rowScale; // per softmax row: 0 where no target
        const scales = tf.tensor2d(inputRowScale, [inputRowScale.length, 1]); // [B·T or k, 1]
        const scaled = tf.mul(saved[0], scales); // [B·T or k, V]: p · scale · w on the backend's kernel
        scales.dispose();
        const grad = dense
          ? tf.reshape(subtractedAtTargets(scaled, kept, targets, rowScale, vocab), shape) // [B, T, V], in place: a fresh kernel output
          : filledTensor(shape, (out) => placeGradientRows(peekValues(scaled), kept, targets, rowScale, vocab, out)); // [B, T, V]
        scaled.dispose();
        return grad;
      },
    };
  });
  return fused(logits);
}

/*
 * The loops over logits live in module-level functions: V8 keeps type
 * feedback per closure, and a loop in the fresh closures of each call would
 * start unoptimised every time.
 */

/**
 * `out` `[B·T, V]`: row `rows[i]` is `scaled[i]` (`p · scale · w`, `[k, V]`)
 * minus `rowScale[i]` at its target, and the rows without a target are 0.
 */
function placeGradientRows(
  scaled: Float32Array,
  rows: Int32Array,
  targets: Int32Array,
  rowScale: Float32Array,
  vocab: number,
  out: Float32Array,
): void {
  let next = 0; // the first row not yet written
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    out.fill(0, next * vocab, r * vocab);
    out.set(scaled.subarray(i * vocab, (i + 1) * vocab), r * vocab);
    out[r * vocab + targets[r]] -= rowScale[i];
    next = r + 1;
  }
  out.fill(0, next * vocab);
}

/** `[count]`: `rowScale[i]` at row `rows[i]`, 0 elsewhere. */
function spreadRows(rowScale: Float32Array, rows: Int32Array, count: number): Float32Array {
  const spread = new Float32Array(count);
  for (let i = 0; i < rows.length; i++) spread[rows[i]] = rowScale[i];
  return spread;
}

/** `g` `[B·T, V]` with `rowScale[i]` subtracted at row `rows[i]`'s target, in place; returns `g`. */
function subtractedAtTargets(g: Tensor, rows: Int32Array, targets: Int32Array, rowScale: Float32Array, vocab: number): Tensor {
  const values = peekValues(g);
  for (let i = 0; i < rows.length; i++) values[rows[i] * vocab + targets[rows[i]]] -= rowScale[i];
  return g;
}

/** The smallest normal float32: below it `p_target` has lost relative precision. */
const MIN_NORMAL_FLOAT32 = 2 ** -126;

/** `[k]`: the rows (positions of `[B·T]`) whose target weight is not 0, in order. */
function targetRows(weights: Float64Array): Int32Array {
  const rows: number[] = [];
  weights.forEach((w, r) => {
    if (w !== 0) rows.push(r);
  });
  return Int32Array.from(rows);
}

/** One row's cross-entropy `max + log Σ exp(l − max) − l_target` in float64, from logits `[B·T, V]`. */
function exactRowLoss(l: Float32Array, row: number, vocab: number, target: number): number {
  const from = row * vocab;
  let max = -Infinity;
  for (let j = from; j < from + vocab; j++) if (l[j] > max) max = l[j];
  let sum = 0;
  for (let j = from; j < from + vocab; j++) sum += Math.exp(l[j] - max);
  return max + Math.log(sum) - l[from + target];
}

/**
 * Per position `[B·T]`: the id it predicts (`ids[b, t + 1]`), the weight of
 * that target (1, or the mask's verdict; 0 at each sequence's last
 * position), and the weights' sum.
 */
function lossTargets(ids: Tensor, mask: Tensor | undefined, b: number, t: number, vocab: number) {
  const idValues = ids.dataSync();
  const maskValues = mask?.dataSync();
  const targets = new Int32Array(b * t);
  const weights = new Float64Array(b * t);
  let total = 0;
  for (let s = 0; s < b; s++) {
    for (let i = 0; i < t - 1; i++) {
      const next = s * t + i + 1;
      const w = maskValues && maskValues[next] === 0 ? 0 : 1;
      if (w === 0) continue;
      const id = idValues[next];
      if (!(Number.isInteger(id) && id >= 0 && id < vocab)) {
        throw new RangeError(`Target token ${id} (sequence ${s}, position ${i + 1}) is outside the vocabulary of ${vocab} logits`);
      }
      targets[s * t + i] = id;
      weights[s * t + i] = w;
      total += w;
    }
  }
  if (total === 0) throw new Error("The loss mask selects no target token (mask[:, 1:] is all zero)");
  return { targets, weights, total };
}
