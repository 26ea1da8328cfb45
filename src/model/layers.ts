/**
 * The pieces block functions are built from: norms, the linear map (full or
 * DRD-factored, with the probe and input hooks), causal grouped-query
 * attention, rotary position embedding, token (and learned position) embedding
 * and the LM head.
 *
 * Every function is a pure tfjs expression (differentiable with `tf.grads`)
 * and leaves disposal to the caller's `tf.tidy`.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { currentBackend, tf } from "../tensor/backend.ts";
import { libraryFor } from "../linalg/lapack_ffi.ts";
import { blasCausalAttention } from "./blas_attention.ts";
import { dimsOf, LM_HEAD_WEIGHT } from "./shapes.ts";
import type { BlockOptions, ModelConfig, VocabularyNames, WeightMap } from "./types.ts";

/** `weights.get(name)`, or an error naming the missing weight. */
export function weightOf(weights: WeightMap, name: string): Tensor {
  const w = weights.get(name);
  if (!w) throw new Error(`Block weights lack "${name}"`);
  return w;
}

/**
 * LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * weight + bias`
 * (biased variance, as torch), `[..., d]`.
 *
 * With its gradient written out (`tf.customGrad`): with `x̂` the normalised
 * input, `ρ = 1/sqrt(var + eps)` per row and `ĝ = dy · weight`,
 * `dx = ρ (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂))`, `dweight = Σ dy x̂` and
 * `dbias = Σ dy` over the leading axes: eleven kernels where the tape's
 * gradient of the forward ran about twenty, 30% less time per norm forward
 * and backward on the fixtures/base shape (`[4, 128, 128]`: 1.03 → 0.72 ms).
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const normed = tf.customGrad((...args) => {
    const [input, w, b, save] = args as [Tensor, Tensor, Tensor, tf.GradSaveFunc];
    const centred = tf.sub(input, tf.mean(input, -1, true)); // [..., d]
    const rho = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), eps)); // [..., 1]
    const xHat = tf.mul(centred, rho); // [..., d]
    save([xHat, rho, w]);
    return {
      value: tf.add(tf.mul(xHat, w), b),
      gradFunc: (dy, saved) => {
        const [savedHat, savedRho, savedWeight] = saved;
        const g = dy as Tensor; // [..., d]
        const gHat = tf.mul(g, savedWeight); // [..., d]
        const dx = tf.mul(
          savedRho,
          tf.sub(tf.sub(gHat, tf.mean(gHat, -1, true)), tf.mul(savedHat, tf.mean(tf.mul(gHat, savedHat), -1, true))),
        ); // [..., d]
        const leading = Array.from({ length: g.rank - 1 }, (_, i) => i);
        return [dx, tf.sum(tf.mul(g, savedHat), leading), tf.sum(g, leading)];
      },
    };
  });
  return normed(x, weight, bias);
}

/** {@link layerNorm} with the weights `name.weight` and `name.bias` of `weights` (GPT-2's and OPT's norms), `[..., d]`. */
export function namedLayerNorm(weights: WeightMap, name: string, x: Tensor, eps: number): Tensor {
  return layerNorm(x, weightOf(weights, `${name}.weight`), weightOf(weights, `${name}.bias`), eps);
}

/** RMSNorm over the last axis (LLaMA): `x / sqrt(mean(x²) + eps) * weight`, `[..., d]`. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const meanSquare = tf.mean(tf.square(x), -1, true); // [..., 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
}

/**
 * The linear map `name` of a block: `y = x W + b (+ probe)`, `[..., in]` ->
 * `[..., out]`, with `W` the kernel-layout `name.weight` `[in, out]` or, for a
 * DRD-compressed linear (docs/METHOD.md §2), the factors `name.weight_u` `[in, r]`
 * and `name.weight_v` `[r, out]` applied as `(x U) V`. The bias `name.bias`
 * is optional. `options.onLinearInput` sees `x` first (KFAC's `A`),
 * `options.onLinearOutput` sees `x W + b`, and a probe
 * `options.probes.get(name)` is added to `y` (its gradient is γ). A stored
 * `options.replay.get(name)` stands in for `x W + b` ({@link replayedProduct}).
 */
export function linear(weights: WeightMap, name: string, x: Tensor, options?: BlockOptions): Tensor {
  options?.onLinearInput?.(name, x);
  const lead = x.shape.slice(0, -1);
  const x2 = tf.reshape(x, [-1, x.shape[x.shape.length - 1] as number]); // [N, in]
  const full = weights.get(`${name}.weight`);
  const u = weights.get(`${name}.weight_u`);
  const v = weights.get(`${name}.weight_v`);
  if (!full && !(u && v)) {
    throw new Error(`Block weights lack "${name}.weight" (or its factors "${name}.weight_u" and "${name}.weight_v")`);
  }
  const replayed = options?.replay?.get(name);
  let y: Tensor; // [N, out]
  if (replayed) {
    // dy [N, out] -> dx [N, in], as the tape's matMul gradient computes it.
    const backward = (dy: Tensor) => (full ? tf.matMul(dy, full, false, true) : tf.matMul(tf.matMul(dy, v!, false, true), u!, false, true));
    y = replayedProduct(x2, tf.reshape(replayed, [x2.shape[0], -1]), backward);
  } else {
    y = full ? tf.matMul(x2, full) : tf.matMul(tf.matMul(x2, u!), v!); // [N, r] -> [N, out]
    const bias = weights.get(`${name}.bias`);
    if (bias) y = tf.add(y, bias);
  }
  y = tf.reshape(y, [...lead, dimsOf(y, 2, "a linear output")[1]]); // [..., out]
  options?.onLinearOutput?.(name, y);
  const probe = options?.probes?.get(name);
  return probe ? tf.add(y, probe) : y;
}

/**
 * `stored` `[N, out]` as the value of a product of `x` `[N, in]` whose
 * gradient w.r.t. `x` is `backward(dy)`: a VJP's recomputed forward reads a
 * linear's output from the calibration forward instead of multiplying again
 * (`BlockOptions.replay`). Only `x` is differentiated, so weights get no
 * gradient through it.
 */
function replayedProduct(x: Tensor, stored: Tensor, backward: (dy: Tensor) => Tensor): Tensor {
  if (stored.shape[0] !== x.shape[0]) {
    throw new Error(`A replayed linear output has ${stored.shape[0]} rows for ${x.shape[0]} inputs`);
  }
  // customGrad hands `f` the inputs and a save function; only the stored value is needed. Its value
  // must be a tensor of its own: a same-shape reshape is one on the same buffer (tf.clone copies on wasm).
  const product = tf.customGrad(() => ({ value: tf.reshape(stored, stored.shape), gradFunc: (dy: Tensor) => backward(dy) }));
  return product(x) as Tensor;
}

/** Additive causal mask `[T, T]`: 0 where key ≤ query, -1e9 above (exp gives exactly 0). */
function causalMask(t: number): Tensor {
  const mask = new Float32Array(t * t);
  for (let i = 0; i < t; i++) mask.fill(-1e9, i * t + i + 1, (i + 1) * t);
  return tf.tensor2d(mask, [t, t]);
}

/**
 * Causal softmax attention with grouped key/value heads.
 *
 * `q` `[B, T, H, hd]`, `k` and `v` `[B, T, Hkv, hd]` (H a multiple of Hkv;
 * query head `h` reads key/value head `floor(h / (H / Hkv))`, as HF's
 * `repeat_kv`). `q` is multiplied by `scale` before `q kᵀ` (OPT's order; the
 * others scale the scores, equal up to rounding). Returns `[B, T, H * hd]`.
 *
 * On the wasm backend with OpenBLAS it runs as one op over the heads in place
 * (`blas_attention.ts`: no transposes, the gradient written out). Otherwise
 * grouping is done by reshaping the query heads of a group into the rows of
 * one matmul, `[B, Hkv, (H/Hkv)·T, hd]`, so keys and values are never copied.
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, scale: number): Tensor {
  const [b, t, heads, hd] = dimsOf(q, 4, "attention queries [B, T, H, hd]");
  const kvHeads = dimsOf(k, 4, "attention keys [B, T, Hkv, hd]")[2];
  if (heads % kvHeads !== 0) {
    throw new Error(`Attention heads ${heads} are not a multiple of key/value heads ${kvHeads}`);
  }
  const lib = currentBackend() === "wasm" ? libraryFor("attention") : undefined;
  if (lib && q.dtype === "float32") return blasCausalAttention(tf.mul(q, scale), k, v, lib);
  const group = heads / kvHeads;
  const qh = tf.transpose(tf.mul(q, scale), [0, 2, 1, 3]); // [B, H, T, hd]
  const qg = tf.reshape(qh, [b, kvHeads, group * t, hd]); // [B, Hkv, G·T, hd]
  const kh = tf.transpose(k, [0, 2, 1, 3]); // [B, Hkv, T, hd]
  const vh = tf.transpose(v, [0, 2, 1, 3]); // [B, Hkv, T, hd]
  const scores = tf.reshape(tf.matMul(qg, kh, false, true), [b, heads, t, t]); // [B, H, T, T]
  const probs = tf.softmax(tf.add(scores, causalMask(t))); // [B, H, T, T]
  const out = tf.matMul(tf.reshape(probs, [b, kvHeads, group * t, t]), vh); // [B, Hkv, G·T, hd]
  const merged = tf.transpose(tf.reshape(out, [b, heads, t, hd]), [0, 2, 1, 3]); // [B, T, H, hd]
  return tf.reshape(merged, [b, t, heads * hd]); // [B, T, H·hd]
}

/** Splits the last axis of `[B, T, H·hd]` into heads: `[B, T, H, hd]`. */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, t, width] = dimsOf(x, 3, "a [B, T, H·hd] projection");
  return tf.reshape(x, [b, t, heads, width / heads]);
}

/**
 * Rotary tables for positions `0..t-1`: `cos` and `sin`, each `[1, T, 1, hd]`
 * (broadcast over batch and heads), in HF's layout `emb = cat(freqs, freqs)`.
 *
 * The angles are rounded to float32 at each step as HF computes them
 * (`inv_freq` and `position · inv_freq` in float32), so long positions match
 * its tables rather than a more exact float64 angle.
 */
export function ropeTables(t: number, hd: number, theta: number): { cos: Tensor; sin: Tensor } {
  const half = hd / 2;
  const cos = new Float32Array(t * hd);
  const sin = new Float32Array(t * hd);
  for (let j = 0; j < half; j++) {
    const invFreq = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * j) / hd))));
    for (let p = 0; p < t; p++) {
      const angle = Math.fround(p * invFreq);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * hd + j] = cos[p * hd + j + half] = c;
      sin[p * hd + j] = sin[p * hd + j + half] = s;
    }
  }
  return { cos: tf.tensor4d(cos, [1, t, 1, hd]), sin: tf.tensor4d(sin, [1, t, 1, hd]) };
}

/**
 * Applies RoPE to `[B, T, H, hd]` with HF's `rotate_half` convention:
 * `x cos + rotate_half(x) sin`, `rotate_half([x1, x2]) = [-x2, x1]` (halves
 * of the head dimension, not interleaved pairs).
 */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const half = dimsOf(x, 4, "RoPE input [B, T, H, hd]")[3] / 2;
  const [x1, x2] = tf.split(x, [half, half], 3); // [B, T, H, hd/2] each
  const rotated = tf.concat([tf.neg(x2), x1], 3); // [B, T, H, hd]
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

/**
 * Token embedding lookup: `table` `[V, d]`, `ids` `[B, T]` int32 -> `[B, T, d]`.
 * Checks every id against the vocabulary first (an out-of-range gather
 * returns zeros or garbage depending on the backend).
 */
export function embedTokens(table: Tensor, ids: Tensor): Tensor {
  if (ids.dtype !== "int32" || ids.shape.length !== 2) {
    throw new Error(`Token ids must be an int32 [B, T] tensor, got ${ids.dtype} [${ids.shape.join(", ")}]`);
  }
  const vocab = dimsOf(table, 2, "the token embedding [V, d]")[0];
  const values = ids.dataSync();
  for (let i = 0; i < values.length; i++) {
    if (values[i] < 0 || values[i] >= vocab) {
      const t = dimsOf(ids, 2, "token ids")[1];
      throw new Error(
        `Token id ${values[i]} at [${Math.floor(i / t)}, ${i % t}] is outside the vocabulary (size ${vocab})`,
      );
    }
  }
  return tf.gather(table, ids); // [B, T, d]
}

/**
 * Rows `offset .. offset + t - 1` of a learned position table `[P, d]` as
 * `[T, d]`; an error when the sequence is longer than the table allows.
 */
export function learnedPositions(table: Tensor, t: number, offset: number, maxPositions: number): Tensor {
  const [rows, d] = dimsOf(table, 2, "the position embedding [P, d]");
  if (offset + t > rows) {
    throw new Error(`Sequence length ${t} exceeds the model's ${maxPositions} positions`);
  }
  return tf.slice(table, [offset, 0], [t, d]); // [T, d]
}

/**
 * Token plus learned position embedding (GPT-2, OPT): ids `[B, T]` int32 ->
 * `[B, T, d]`, the rows of `outer.get(embedName)` plus rows
 * `offset .. offset + T - 1` of the position table `outer.get(positionsName)`.
 */
export function embedWithPositions(
  outer: WeightMap,
  ids: Tensor,
  embedName: string,
  positionsName: string,
  offset: number,
  maxPositions: number,
): Tensor {
  const tokens = embedTokens(weightOf(outer, embedName), ids); // [B, T, d]
  const t = dimsOf(ids, 2, "token ids [B, T]")[1];
  const positions = learnedPositions(weightOf(outer, positionsName), t, offset, maxPositions); // [T, d]
  return tf.add(tokens, positions); // [B, T, d]
}

/** The vocabulary matrices' names of a model whose token embedding is `embedName` (an untied head is `lm_head.weight`). */
export function vocabularyNames(embedName: string, cfg: ModelConfig): VocabularyNames {
  return { embedding: embedName, head: cfg.tiedHead ? embedName : LM_HEAD_WEIGHT };
}

/**
 * The LM head: final hidden states `[B, T, d]` -> logits `[B, T, V]`, with the
 * kernel-layout `lm_head.weight` `[d, V]` of `outer`, or when `tied` the token
 * embedding `outer.get(embedName)` `[V, d]` (used transposed).
 */
export function lmHead(x: Tensor, outer: WeightMap, embedName: string, tied: boolean): Tensor {
  const [b, t, d] = dimsOf(x, 3, "hidden states [B, T, d]");
  const weight = weightOf(outer, tied ? embedName : LM_HEAD_WEIGHT);
  const logits = tf.matMul(tf.reshape(x, [b * t, d]), weight, false, tied); // [B·T, V]
  return tf.reshape(logits, [b, t, dimsOf(logits, 2, "logits")[1]]);
}
