// A ReLU MLP's channel products c_j = mean_t h_tj γ₁,tj (src/stats/channel_products.ts,
// docs/GRADOT.md "SCP's first-order terms") against SCP's two first-order terms computed
// the old way, from the KFAC gradients g₁, g₂ of real tfjs gradients of a small random MLP:
// the producer's g₁[:,j]·w̃₁ⱼ and the consumer's g₂[j,:]·w₂ⱼ. For a GELU MLP the consumer's
// term is not the channel product, which is why GELU and SwiGLU MLPs keep g.
import { beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "@tensorflow/tfjs";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { geluNew } from "../../src/model/gpt2.ts";
import { accumulateChannelProducts, finalizeChannelProducts } from "../../src/stats/channel_products.ts";
import { accumulateKfac, finalizeKfac } from "../../src/stats/kfac.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { maxAbs, maxAbsDiff, normalRng, randomMatrix } from "../score/reference.ts";

const n = 48; // tokens
const d = 6;
const m = 20;

/** Rows `[from, to)` of a matrix. */
function rowSlice(a: Matrix, from: number, to: number): Matrix {
  return { rows: to - from, cols: a.cols, data: a.data.slice(from * a.cols, to * a.cols) };
}

const matrixOf = (t: Tensor): Matrix => ({ rows: t.shape[0]!, cols: t.shape[1]!, data: t.dataSync() as Float32Array });

/**
 * A random MLP `y = act(x W₁ + b₁) W₂ + b₂` (kernel layout) under the summed loss
 * `Σ_t ½‖y_t − target_t‖²`, differentiated by tfjs through zero probes at both linear
 * outputs: fc1's input x `[n, d]`, its γ₁ `[n, m]`, fc2's input h `[n, m]`, its γ₂ `[n, d]`.
 */
function mlpGradients(act: (y: Tensor) => Tensor, seed: number) {
  const rng = normalRng(seed);
  const x = randomMatrix(n, d, rng);
  const w1 = randomMatrix(d, m, rng);
  const b1 = randomMatrix(1, m, rng);
  const w2 = randomMatrix(m, d, rng);
  const b2 = randomMatrix(1, d, rng);
  const target = randomMatrix(n, d, rng);
  const [xt, w1t, b1t, w2t, b2t, tt] = [x, w1, b1, w2, b2, target].map((a) => tf.tensor2d(a.data, [a.rows, a.cols]));
  const h = tf.tidy(() => act(tf.add(tf.matMul(xt, w1t), b1t))); // [n, m]
  const loss = (p1: Tensor, p2: Tensor) => {
    const hidden = act(tf.add(tf.add(tf.matMul(xt, w1t), b1t), p1)); // [n, m]
    const y = tf.add(tf.add(tf.matMul(hidden, w2t), b2t), p2); // [n, d]
    return tf.mul(0.5, tf.sum(tf.square(tf.sub(y, tt))));
  };
  const [g1, g2] = tf.grads(loss)([tf.zeros([n, m]), tf.zeros([n, d])]);
  const result = { x, w1, b1, w2, gamma1: matrixOf(g1), h: matrixOf(h), gamma2: matrixOf(g2) };
  tf.dispose([xt, w1t, b1t, w2t, b2t, tt, h, g1, g2]);
  return result;
}

/** SCP's first-order terms the old way, from KFAC's gradients: producer `g₁[:,j]·w̃₁ⱼ` (bias row included) and consumer `g₂[j,:]·w₂ⱼ`, `[m]` each. */
function firstOrderFromGradients(mlp: ReturnType<typeof mlpGradients>) {
  const g1 = finalizeKfac(accumulateKfac(undefined, mlp.x, mlp.gamma1, { bias: true })).g!; // [d+1, m]
  const g2 = finalizeKfac(accumulateKfac(undefined, mlp.h, mlp.gamma2)).g!; // [m, d]
  const producer = Array.from({ length: m }, (_, j) => {
    let dot = g1.data[d * m + j] * mlp.b1.data[j];
    for (let i = 0; i < d; i++) dot += g1.data[i * m + j] * mlp.w1.data[i * m + j];
    return dot;
  });
  const consumer = Array.from({ length: m }, (_, j) => {
    let dot = 0;
    for (let k = 0; k < d; k++) dot += g2.data[j * d + k] * mlp.w2.data[j * d + k];
    return dot;
  });
  return { producer, consumer };
}

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("channel products of a ReLU MLP", () => {
  it("equal both SCP first-order terms computed from KFAC's g₁ and g₂ of tfjs gradients", () => {
    const mlp = mlpGradients(tf.relu, 3);
    const active = mlp.h.data.filter((v) => v > 0).length;
    expect(active).toBeGreaterThan(0.2 * n * m); // some channels cut, some pass
    expect(active).toBeLessThan(0.8 * n * m);
    const c = finalizeChannelProducts(accumulateChannelProducts(undefined, mlp.h, mlp.gamma1));
    const { producer, consumer } = firstOrderFromGradients(mlp);
    expect(c.tokens).toBe(n);
    expect(c.mean.length).toBe(m);
    const scale = maxAbs(producer);
    expect(scale).toBeGreaterThan(0.1);
    const [dp, dc] = [maxAbsDiff(c.mean, producer), maxAbsDiff(c.mean, consumer)];
    console.log(`channel products vs g₁·w̃₁: ${dp.toExponential(2)}, vs g₂·w₂: ${dc.toExponential(2)} (scale ${scale.toExponential(2)}, allowed 1e-5 x scale)`);
    expect(dp).toBeLessThan(1e-5 * scale);
    expect(dc).toBeLessThan(1e-5 * scale);
  });

  it("are not the consumer's term of a GELU MLP (so GELU keeps g)", () => {
    const mlp = mlpGradients(geluNew, 4);
    const c = finalizeChannelProducts(accumulateChannelProducts(undefined, mlp.h, mlp.gamma1));
    const { consumer } = firstOrderFromGradients(mlp);
    expect(maxAbsDiff(c.mean, consumer)).toBeGreaterThan(1e-2 * maxAbs(consumer));
  });

  it("are the same bits summed in chunks, in token order, and scale γ by gradScale", () => {
    const rng = normalRng(5);
    const h = randomMatrix(n, m, rng);
    const gamma = randomMatrix(n, m, rng);
    const whole = finalizeChannelProducts(accumulateChannelProducts(undefined, h, gamma));
    let state = accumulateChannelProducts(undefined, rowSlice(h, 0, 7), rowSlice(gamma, 0, 7));
    state = accumulateChannelProducts(state, rowSlice(h, 7, 30), rowSlice(gamma, 7, 30));
    state = accumulateChannelProducts(state, rowSlice(h, 30, n), rowSlice(gamma, 30, n));
    expect(finalizeChannelProducts(state).mean).toEqual(whole.mean);
    const halved = { ...gamma, data: gamma.data.map((v) => v / 2) }; // exact in float32
    const scaled = finalizeChannelProducts(accumulateChannelProducts(undefined, h, halved, 2));
    expect(scaled.mean).toEqual(whole.mean);
  });

  it("name what is wrong", () => {
    const rng = normalRng(6);
    const h = randomMatrix(4, m, rng);
    const gamma = randomMatrix(4, m, rng);
    expect(() => accumulateChannelProducts(undefined, h, rowSlice(gamma, 0, 3))).toThrow(
      `the consumer input h is [4, ${m}] but the producer output gradient gamma is [3, ${m}]`,
    );
    const state = accumulateChannelProducts(undefined, h, gamma);
    expect(() => accumulateChannelProducts(state, randomMatrix(4, 3, rng), randomMatrix(4, 3, rng))).toThrow(
      `the chunk has 3 channels but the sum was started for ${m}`,
    );
    expect(() => accumulateChannelProducts(state, h, gamma, 0)).toThrow("gradScale must be a positive finite number, got 0");
    finalizeChannelProducts(state);
    expect(() => finalizeChannelProducts(state)).toThrow("already finalized");
    expect(() => accumulateChannelProducts(state, h, gamma)).toThrow("already finalized");
    const nan = { ...h, data: h.data.map((v, k) => (k === 2 ? NaN : v)) };
    expect(() => finalizeChannelProducts(accumulateChannelProducts(undefined, nan, gamma))).toThrow("non-finite entry NaN at channel 2");
  });
});
