import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AdamW, decaysByDefault } from "../../src/train/adamw.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";

interface Golden {
  lrs: number[];
  initial: number[];
  grads: number[][];
  after: number[][];
  exp_avg: number[];
  exp_avg_sq: number[];
}
const golden = JSON.parse(
  readFileSync(new URL("./golden/adamw.json", import.meta.url), "utf8"),
) as Golden;
const params = [{ name: "w", size: 12, decay: true }, { name: "b", size: 4, decay: false }];

/** AdamW written out from Loshchilov & Hutter (Algorithm 2, η_t = lr), in float64. */
function referenceSteps(theta: number[], grads: number[][], lrs: number[], decay: boolean[]) {
  const [b1, b2, eps, wd] = [0.9, 0.95, 1e-8, 0.1];
  const m = theta.map(() => 0);
  const v = theta.map(() => 0);
  const out: number[][] = [];
  grads.forEach((g, s) => {
    const t = s + 1;
    theta = theta.map((x, i) => {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const mHat = m[i] / (1 - b1 ** t);
      const vHat = v[i] / (1 - b2 ** t);
      const decayed = decay[i] ? x - lrs[s] * wd * x : x;
      return decayed - (lrs[s] * mHat) / (Math.sqrt(vHat) + eps);
    });
    out.push(theta);
  });
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe("AdamW", () => {
  it("matches torch.optim.AdamW step by step (golden, max abs diff 2e-6)", () => {
    const opt = new AdamW(params);
    const theta = Float32Array.from(golden.initial);
    golden.grads.forEach((g, s) => {
      opt.step(theta, Float32Array.from(g), golden.lrs[s]);
      expect(maxAbsDiff(theta, golden.after[s])).toBeLessThan(2e-6);
    });
    const state = opt.state();
    expect(state.step).toBe(5);
    expect(maxAbsDiff(state.m, golden.exp_avg)).toBeLessThan(1e-6);
    expect(maxAbsDiff(state.v, golden.exp_avg_sq)).toBeLessThan(1e-5);
  });

  it("matches the paper's formula with bias-corrected moments (max abs diff 2e-6)", () => {
    const opt = new AdamW(params);
    const theta = Float32Array.from(golden.initial);
    const decay = Array.from({ length: 16 }, (_, i) => i < 12);
    const expected = referenceSteps(golden.initial, golden.grads, golden.lrs, decay);
    golden.grads.forEach((g, s) => {
      opt.step(theta, Float32Array.from(g), golden.lrs[s]);
      expect(maxAbsDiff(theta, expected[s])).toBeLessThan(2e-6);
    });
  });

  it("first step moves every coordinate by lr·sign(g) (bias correction at t = 1)", () => {
    const opt = new AdamW([{ name: "x", size: 3, decay: false }]);
    const x = new Float32Array([1, 2, 3]);
    opt.step(x, new Float32Array([5, -0.001, 1e3]), 0.1);
    expect(Array.from(x).map((v) => Number(v.toFixed(5)))).toEqual([0.9, 2.1, 2.9]);
  });

  it("minimises a quadratic to its minimum", () => {
    // f(x) = ½ Σ a_i (x_i − c_i)², gradient a_i (x_i − c_i); no decay so the minimum is c.
    const a = [1, 10, 0.1, 3];
    const c = [3, -2, 0.5, 7];
    const opt = new AdamW([{ name: "x", size: 4, decay: false }], { beta2: 0.999 });
    const x = new Float32Array(4);
    for (let s = 0; s < 3000; s++) {
      const g = Float32Array.from(x, (xi, i) => a[i] * (xi - c[i]));
      opt.step(x, g, s < 2000 ? 0.05 : 0.005);
    }
    expect(maxAbsDiff(x, c)).toBeLessThan(1e-2);
  });

  it("decays toward zero by lr·λ·θ when the gradient is zero", () => {
    const opt = new AdamW([{ name: "w", size: 2, decay: true }, { name: "b", size: 1, decay: false }]);
    const x = new Float32Array([2, -4, 8]);
    opt.step(x, new Float32Array(3), 0.5);
    expect(Array.from(x)).toEqual([Math.fround(2 * 0.95), Math.fround(-4 * 0.95), 8]);
  });

  it("restores a saved state and continues identically", () => {
    const a = new AdamW(params);
    const xa = Float32Array.from(golden.initial);
    a.step(xa, Float32Array.from(golden.grads[0]), 0.01);
    const b = new AdamW(params);
    b.load(a.state());
    const xb = xa.slice();
    a.step(xa, Float32Array.from(golden.grads[1]), 0.02);
    b.step(xb, Float32Array.from(golden.grads[1]), 0.02);
    expect(b.updates).toBe(2);
    expect(Array.from(xb)).toEqual(Array.from(xa));
    expect(() => b.load({ step: 1, m: new Float32Array(3), v: new Float32Array(3) })).toThrow(
      "it holds 3 and 3 moments, the model has 16 parameters",
    );
  });

  it("updates tfjs variables exactly as the flat path does", async () => {
    await initBackend(undefined, true);
    const start = tf.memory().numTensors;
    const flat = new AdamW(params);
    const onVars = new AdamW(params);
    const theta = Float32Array.from(golden.initial);
    const initial = [tf.tensor(theta.slice(0, 12), [3, 4]), tf.tensor(theta.slice(12), [4])];
    const vars = new Map([["w", tf.variable(initial[0])], ["b", tf.variable(initial[1])]]);
    tf.dispose(initial);
    for (let s = 0; s < 3; s++) {
      const g = Float32Array.from(golden.grads[s]);
      flat.step(theta, g, golden.lrs[s]);
      const grads = { w: tf.tensor(g.slice(0, 12), [3, 4]), b: tf.tensor(g.slice(12), [4]) };
      onVars.stepVariables(vars, grads, golden.lrs[s]);
      tf.dispose(Object.values(grads));
    }
    const got = [...vars.get("w")!.dataSync(), ...vars.get("b")!.dataSync()];
    expect(got).toEqual(Array.from(theta));
    for (const v of vars.values()) v.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it("decays matrices but not biases, norms or embeddings by default", () => {
    expect(decaysByDefault("self_attn.q_proj.weight", [8, 8])).toBe(true);
    expect(decaysByDefault("self_attn.q_proj.bias", [8])).toBe(false);
    expect(decaysByDefault("final_layer_norm.weight", [8])).toBe(false);
    expect(decaysByDefault("model.decoder.embed_tokens.weight", [50, 8])).toBe(false);
    expect(decaysByDefault("model.decoder.embed_positions.weight", [34, 8])).toBe(false);
  });

  it("rejects bad hyper-parameters and mismatched sizes", () => {
    expect(() => new AdamW(params, { beta2: 1 })).toThrow("beta2 must lie in [0, 1), got 1");
    expect(() => new AdamW([...params, params[0]])).toThrow('parameter "w" is listed twice');
    expect(() => new AdamW(params).step(new Float32Array(16), new Float32Array(15), 0.1)).toThrow(
      "expects 16 parameters and gradients, got 16 and 15",
    );
  });
});
