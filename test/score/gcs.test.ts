import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { svd } from "../../src/linalg/svd.ts";
import { type ChannelMlp, type ChannelMlpStats, drdScores, scpScores } from "../../src/score/gcs.ts";
import { accumulateKfac, finalizeKfac, type KfacFactors } from "../../src/stats/kfac.ts";
import { denseFactor } from "../../src/stats/symmetric_factor.ts";
import {
  at,
  type Dense,
  explicitGcs,
  maxAbs,
  maxAbsDiff,
  normalRng,
  randomMatrix,
  randomPsd,
  transpose,
  zeros,
} from "./reference.ts";

/** Random KFAC-shaped statistics for a linear with `inAug` inputs and `out` outputs. */
function randomStats(inAug: number, out: number, rng: () => number): KfacFactors {
  return {
    A: denseFactor(randomPsd(inAug, rng)),
    G: denseFactor(randomPsd(out, rng)),
    g: randomMatrix(inAug, out, rng), // kernel layout [in', out]
    tokens: 1,
  };
}

/** `[Wk; b]` in docs/METHOD.md's out×in view: `[out, in+1]` (bias as the last column). */
function augmentedOutByIn(weight: Matrix, bias?: Float32Array): Dense {
  const w = transpose(weight); // [out, in]
  if (!bias) return w;
  const out = zeros(w.rows, w.cols + 1);
  for (let o = 0; o < w.rows; o++) {
    for (let i = 0; i < w.cols; i++) out.data[o * (w.cols + 1) + i] = at(w, o, i);
    out.data[o * (w.cols + 1) + w.cols] = bias[o];
  }
  return out;
}

/** Explicit SCP GCS of channel j: δ zeroes row j of every input W₁ (out×in) and column j of W₂. */
function explicitScp(mlp: ChannelMlp, stats: ChannelMlpStats, lambda: number, j: number): number {
  let total = 0;
  mlp.inputs.forEach((linear, index) => {
    const st = stats.inputs[index];
    const w = augmentedOutByIn(linear.weight, linear.bias); // [m, d']
    const delta = zeros(w.rows, w.cols);
    for (let c = 0; c < w.cols; c++) delta.data[j * w.cols + c] = -at(w, j, c);
    total += explicitGcs(st.G.dense(), delta, st.A.dense(), transpose(st.g), lambda);
  });
  const st = stats.output;
  const w2 = transpose(mlp.output.weight); // [d, m]
  const mAug = st.A.size;
  const delta = zeros(w2.rows, mAug); // [d, m'], bias column (if any) untouched
  for (let r = 0; r < w2.rows; r++) delta.data[r * mAug + j] = -at(w2, r, j);
  return total + explicitGcs(st.G.dense(), delta, st.A.dense(), transpose(st.g), lambda);
}

describe("DRD closed-form GCS", () => {
  for (const [inF, out, lambda] of [[7, 5, 0.7], [4, 9, -1.3], [6, 6, 0]] as const) {
    it(`equals ‖GδA‖₁ − λ⟨g,δ⟩ with δ_i = −s_i u_i v_iᵀ ([${inF}, ${out}], λ ${lambda})`, () => {
      const rng = normalRng(inF * 31 + out);
      const wk = randomMatrix(inF, out, rng); // kernel layout
      const f = svd(wk);
      const stats = randomStats(inF, out, rng);
      const scores = drdScores(f, stats, lambda);
      const gOutIn = transpose(stats.g); // docs/METHOD.md's g, out×in
      const expected = Array.from(f.s, (s, i) => {
        // docs/METHOD.md view: u_i (out) is row i of Vt, v_i (in) is column i of U.
        const delta = zeros(out, inF);
        for (let o = 0; o < out; o++) {
          for (let c = 0; c < inF; c++) delta.data[o * inF + c] = -s * at(f.vt, i, o) * at(f.u, c, i);
        }
        return explicitGcs(stats.G.dense(), delta, stats.A.dense(), gOutIn, lambda);
      });
      expect(scores.length).toBe(Math.min(inF, out));
      expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-4 * maxAbs(expected));
    });
  }

  it("is unchanged when a singular vector pair flips sign", () => {
    const rng = normalRng(3);
    const f = svd(randomMatrix(8, 6, rng));
    const stats = randomStats(8, 6, rng);
    const flipped = {
      u: { ...f.u, data: f.u.data.map((v, k) => (k % f.u.cols === 2 ? -v : v)) },
      s: f.s,
      vt: { ...f.vt, data: f.vt.data.map((v, k) => (Math.floor(k / f.vt.cols) === 2 ? -v : v)) },
    };
    const a = drdScores(f, stats, 0.9);
    expect(maxAbsDiff(drdScores(flipped, stats, 0.9), a)).toBeLessThan(1e-5 * maxAbs(a));
  });

  it("works on statistics from accumulateKfac and rejects augmented ones", () => {
    const rng = normalRng(11);
    const x = randomMatrix(30, 5, rng);
    const gamma = randomMatrix(30, 4, rng);
    const wk = randomMatrix(5, 4, rng);
    const f = svd(wk);
    const stats = finalizeKfac(accumulateKfac(undefined, x, gamma));
    const scores = drdScores(f, stats, 2);
    const expected = Array.from(f.s, (s, i) => {
      const delta = zeros(4, 5);
      for (let o = 0; o < 4; o++) {
        for (let c = 0; c < 5; c++) delta.data[o * 5 + c] = -s * at(f.vt, i, o) * at(f.u, c, i);
      }
      return explicitGcs(stats.G.dense(), delta, stats.A.dense(), transpose(stats.g), 2);
    });
    expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-4 * maxAbs(expected));
    const augmented = finalizeKfac(accumulateKfac(undefined, x, gamma, { bias: true }));
    expect(() => drdScores(f, augmented, 2)).toThrow("use unaugmented statistics");
  });
});

/**
 * A random OPT MLP of width `m` (fc1 and fc2 with biases) and its KFAC
 * statistics: fc1's augmented, fc2's augmented unless `outputAugmented` is false.
 */
function optMlp(d: number, m: number, rng: () => number, outputAugmented = true): { mlp: ChannelMlp; stats: ChannelMlpStats } {
  const mlp: ChannelMlp = {
    inputs: [{ weight: randomMatrix(d, m, rng), bias: randomMatrix(1, m, rng).data }],
    output: { weight: randomMatrix(m, d, rng), bias: randomMatrix(1, d, rng).data },
  };
  const stats: ChannelMlpStats = {
    inputs: [randomStats(d + 1, m, rng)],
    output: randomStats(m + (outputAugmented ? 1 : 0), d, rng),
  };
  return { mlp, stats };
}

describe("SCP closed-form GCS", () => {
  const d = 5;
  const m = 9;

  it("equals the explicit GCS per channel for an OPT MLP (fc1 bias augmented, fc2 bias augmented)", () => {
    const { mlp, stats } = optMlp(d, m, normalRng(21));
    for (const lambda of [0, 0.8, -2]) {
      const scores = scpScores(mlp, stats, lambda);
      const expected = Array.from({ length: m }, (_, j) => explicitScp(mlp, stats, lambda, j));
      expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-4 * maxAbs(expected));
    }
  });

  it("equals the explicit GCS on an MLP wider than a product tile (tile edges, bias row)", () => {
    const { mlp, stats } = optMlp(d, 600, normalRng(25)); // three 256-channel tiles, the last partial
    const scores = scpScores(mlp, stats, 0.7);
    const channels = [0, 1, 255, 256, 257, 511, 512, 513, 598, 599];
    const expected = channels.map((j) => explicitScp(mlp, stats, 0.7, j));
    expect(maxAbsDiff(channels.map((j) => scores[j]), expected)).toBeLessThan(1e-4 * maxAbs(expected));
  });

  it("equals the explicit GCS with unaugmented fc2 statistics", () => {
    const { mlp, stats } = optMlp(d, m, normalRng(22), false);
    const scores = scpScores(mlp, stats, 1.5);
    const expected = Array.from({ length: m }, (_, j) => explicitScp(mlp, stats, 1.5, j));
    expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-4 * maxAbs(expected));
  });

  it("adds the gate's term for a gated (SwiGLU) MLP", () => {
    const rng = normalRng(23);
    const mlp: ChannelMlp = {
      inputs: [{ weight: randomMatrix(d, m, rng) }, { weight: randomMatrix(d, m, rng) }],
      output: { weight: randomMatrix(m, d, rng) },
    };
    const stats: ChannelMlpStats = {
      inputs: [randomStats(d, m, rng), randomStats(d, m, rng)],
      output: randomStats(m, d, rng),
    };
    const scores = scpScores(mlp, stats, 0.6);
    const expected = Array.from({ length: m }, (_, j) => explicitScp(mlp, stats, 0.6, j));
    expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-4 * maxAbs(expected));
    const ungated = scpScores(
      { inputs: [mlp.inputs[1]], output: mlp.output },
      { inputs: [stats.inputs[1]], output: stats.output },
      0.6,
    );
    const gateOnly = Array.from({ length: m }, (_, j) => expected[j] - ungated[j]);
    const gateExpected = Array.from({ length: m }, (_, j) => {
      const w = transpose(mlp.inputs[0].weight);
      const delta = zeros(m, d);
      for (let c = 0; c < d; c++) delta.data[j * d + c] = -at(w, j, c);
      const st = stats.inputs[0];
      return explicitGcs(st.G.dense(), delta, st.A.dense(), transpose(st.g), 0.6);
    });
    expect(maxAbsDiff(gateOnly, gateExpected)).toBeLessThan(1e-4 * maxAbs(expected));
  });

  it("takes a ReLU MLP's two first-order terms from its channel products: λ (c_j + c_j), no g read", () => {
    const rng = normalRng(26);
    const { mlp, stats } = optMlp(d, m, rng, false);
    const withoutG = (f: KfacFactors): KfacFactors => ({ A: f.A, G: f.G, tokens: f.tokens });
    const channels = { mean: Float64Array.from({ length: m }, rng), tokens: 1 };
    const relu: ChannelMlpStats = { inputs: stats.inputs.map(withoutG), output: withoutG(stats.output), channels };
    const lambda = 0.9;
    const curvature = scpScores(mlp, stats, 0);
    const expected = Array.from(curvature, (v, j) => v + lambda * (channels.mean[j] + channels.mean[j]));
    const scores = scpScores(mlp, relu, lambda);
    expect(maxAbsDiff(scores, expected)).toBeLessThan(1e-5 * maxAbs(expected));
    // With g present too, the channel products are what is read.
    expect(scpScores(mlp, { ...stats, channels }, lambda)).toEqual(scores);
  });

  it("names a missing g, and channel products of another width or token count", () => {
    const rng = normalRng(27);
    const { mlp, stats } = optMlp(d, m, rng, false);
    const noG: ChannelMlpStats = { inputs: stats.inputs, output: { A: stats.output.A, G: stats.output.G, tokens: 1 } };
    expect(() => scpScores(mlp, noG, 1)).toThrow(
      "GCS SCP output has no gradient g (its KFAC statistics were summed without one, as a ReLU MLP's are): pass the MLP's channel products",
    );
    const narrow = { mean: new Float64Array(m - 1), tokens: 1 };
    expect(() => scpScores(mlp, { ...stats, channels: narrow }, 1)).toThrow(`GCS SCP output has ${m} channels but the channel products ${m - 1}`);
    const other = { mean: new Float64Array(m), tokens: 2 };
    expect(() => scpScores(mlp, { ...stats, channels: other }, 1)).toThrow("GCS SCP output statistics saw 1 tokens but the channel products 2");
    const gated = { inputs: [mlp.inputs[0], mlp.inputs[0]], output: mlp.output };
    const gatedStats = { inputs: [stats.inputs[0], stats.inputs[0]], output: stats.output, channels: { mean: new Float64Array(m), tokens: 1 } };
    expect(() => scpScores(gated, gatedStats, 1)).toThrow("GCS SCP was given channel products for an MLP with 2 input linears");
    const f = svd(randomMatrix(5, 4, rng));
    const attention = randomStats(5, 4, rng);
    expect(() => drdScores(f, { A: attention.A, G: attention.G, tokens: 1 }, 1)).toThrow("GCS DRD has no gradient g");
  });

  it("rejects a biased input linear whose statistics are not augmented", () => {
    const rng = normalRng(24);
    const mlp: ChannelMlp = {
      inputs: [{ weight: randomMatrix(d, m, rng), bias: new Float32Array(m) }],
      output: { weight: randomMatrix(m, d, rng) },
    };
    const stats = { inputs: [randomStats(d, m, rng)], output: randomStats(m, d, rng) };
    expect(() => scpScores(mlp, stats, 1)).toThrow(
      "GCS SCP input 0 has a bias but its factor A is [5, 5]: accumulate it with bias: true ([6, 6])",
    );
  });
});
