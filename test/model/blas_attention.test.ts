/**
 * The in-place OpenBLAS attention (src/model/blas_attention.ts) against a
 * reference composed of tfjs ops (transposes, matmuls, masked softmax), values
 * and gradients, with grouped key/value heads.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { libraryFor } from "../../src/linalg/lapack_ffi.ts";
import { blasCausalAttention } from "../../src/model/blas_attention.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

/** softmax(q kᵀ + mask) v with q [B, T, H, hd], k, v [B, T, Hkv, hd], head h reading kv head h / (H / Hkv): [B, T, H·hd]. */
function reference(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor {
  const [b, t, heads, hd] = q.shape;
  const group = heads / k.shape[2]!;
  const repeat = (x: tf.Tensor) => tf.gather(x, Array.from({ length: heads }, (_, h) => Math.floor(h / group)), 2); // [B, T, H, hd]
  const qh = tf.transpose(q, [0, 2, 1, 3]);
  const kh = tf.transpose(repeat(k), [0, 2, 1, 3]);
  const vh = tf.transpose(repeat(v), [0, 2, 1, 3]);
  const mask = tf.tensor2d(Array.from({ length: t * t }, (_, i) => (i % t > Math.floor(i / t) ? -Infinity : 0)), [t, t]);
  const probs = tf.softmax(tf.add(tf.matMul(qh, kh, false, true), mask)); // [B, H, T, T]
  return tf.reshape(tf.transpose(tf.matMul(probs, vh), [0, 2, 1, 3]), [b, t, heads * hd]);
}

describe("blasCausalAttention", () => {
  it("equals the tfjs-op attention and its gradients, with grouped key/value heads", () => {
    const lib = libraryFor("test");
    if (!lib) return; // the tfjs path serves then (golden tests cover it)
    const [b, t, heads, kvHeads, hd] = [2, 7, 4, 2, 3];
    const q = tf.randomNormal([b, t, heads, hd], 0, 1, "float32", 1);
    const k = tf.randomNormal([b, t, kvHeads, hd], 0, 1, "float32", 2);
    const v = tf.randomNormal([b, t, kvHeads, hd], 0, 1, "float32", 3);
    const dy = tf.randomNormal([b, t, heads * hd], 0, 1, "float32", 4);
    const ours = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => blasCausalAttention(x, y, z, lib));
    const theirs = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => reference(x, y, z));
    const diff = (a: tf.Tensor, c: tf.Tensor) => tf.max(tf.abs(tf.sub(a, c))).dataSync()[0];
    expect(diff(blasCausalAttention(q, k, v, lib), reference(q, k, v))).toBeLessThan(1e-5);
    const got = ours([q, k, v], dy);
    const want = theirs([q, k, v], dy);
    got.forEach((g, i) => {
      expect(g.shape).toEqual(want[i].shape);
      expect(diff(g, want[i])).toBeLessThan(1e-4);
    });
    // The future is masked: changing the last position's key and value leaves every earlier output as it was.
    const later = tf.concat([tf.slice(v, [0, 0, 0, 0], [b, t - 1, kvHeads, hd]), tf.onesLike(tf.slice(v, [0, t - 1, 0, 0], [b, 1, kvHeads, hd]))], 1);
    const before = tf.slice(blasCausalAttention(q, k, v, lib), [0, 0, 0], [b, t - 1, heads * hd]);
    const after = tf.slice(blasCausalAttention(q, k, later, lib), [0, 0, 0], [b, t - 1, heads * hd]);
    expect(diff(before, after)).toBe(0);
  });
});
