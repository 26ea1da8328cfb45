import { beforeAll, describe, expect, it } from "vitest";
import { channelMagnitudes, pruneMlp, selectScpChannels } from "../../src/compress/scp.ts";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { type ChannelMlp, type ChannelMlpStats, scpScores } from "../../src/score/gcs.ts";
import { denseFactor } from "../../src/stats/symmetric_factor.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { maxAbs, maxAbsDiff, normalRng, randomMatrix, randomPsd } from "../score/reference.ts";

beforeAll(async () => {
  await initBackend("cpu", true);
});

function tensor(m: Matrix): tf.Tensor2D {
  return tf.tensor2d(m.data, [m.rows, m.cols]);
}

/**
 * MLP forward in tfjs, kernel layout: `act(x W₁ + b₁) W₂ + b₂`, or for two
 * inputs (SwiGLU) `(silu(x W_gate) ⊙ (x W_up)) W_down`. Returns `[N, d]`.
 */
function forward(mlp: ChannelMlp, x: Matrix): Float32Array {
  return tf.tidy(() => {
    const xt = tensor(x); // [N, d]
    const pre = mlp.inputs.map((l) => {
      const y = tf.matMul(xt, tensor(l.weight)); // [N, m]
      return l.bias ? tf.add(y, tf.tensor1d(l.bias)) : y;
    });
    const h = pre.length === 1
      ? tf.relu(pre[0]) // [N, m]
      : tf.mul(tf.mul(pre[0], tf.sigmoid(pre[0])), pre[1]); // [N, m]
    const y = tf.matMul(h, tensor(mlp.output.weight)); // [N, d]
    const out = mlp.output.bias ? tf.add(y, tf.tensor1d(mlp.output.bias)) : y;
    return out.dataSync() as Float32Array;
  });
}

/** The same MLP with channels not in `kept` zeroed (input columns, their bias, output rows). */
function zeroChannels(mlp: ChannelMlp, kept: Int32Array): ChannelMlp {
  const keep = new Set(kept);
  const zeroCols = (w: Matrix): Matrix => ({
    ...w,
    data: w.data.map((v, k) => (keep.has(k % w.cols) ? v : 0)),
  });
  return {
    inputs: mlp.inputs.map((l) => ({
      weight: zeroCols(l.weight),
      bias: l.bias?.map((v, j) => (keep.has(j) ? v : 0)),
    })),
    output: {
      weight: {
        ...mlp.output.weight,
        data: mlp.output.weight.data.map((v, k) => (keep.has(Math.floor(k / mlp.output.weight.cols)) ? v : 0)),
      },
      bias: mlp.output.bias,
    },
  };
}

describe("SCP channel selection", () => {
  it("removes exactly the lowest-scoring channels and keeps the original order", () => {
    const rng = normalRng(1);
    const scores = Float32Array.from({ length: 50 }, () => rng());
    const width = 31;
    const { kept, tie } = selectScpChannels(scores, new Float64Array(50), width);
    expect(tie).toEqual({ tied: 0, bySecondary: 0, byIndex: 0 });
    const removed = Array.from(scores.keys()).sort((a, b) => scores[a] - scores[b]).slice(0, 50 - width);
    const expected = Array.from(scores.keys()).filter((j) => !removed.includes(j));
    expect(Array.from(kept)).toEqual(expected);
  });

  it("rejects a width outside [1, m] and NaN scores", () => {
    expect(() => selectScpChannels(new Float32Array(4), new Float64Array(4), 5)).toThrow("SCP width must be an integer in [1, 4], got 5");
    expect(() => selectScpChannels(Float32Array.from([1, NaN, 2]), new Float64Array(3), 2)).toThrow("SCP channel 1 has a NaN score");
    expect(() => selectScpChannels(new Float32Array(4), new Float64Array(3), 2)).toThrow("SCP has 4 scores but 3 channel magnitudes");
  });
});

describe("SCP channel magnitudes and tie-breaking", () => {
  const d = 5;
  const m = 12;
  const rng = normalRng(11);
  const mlp: ChannelMlp = {
    inputs: [{ weight: randomMatrix(d, m, rng), bias: randomMatrix(1, m, rng).data }, { weight: randomMatrix(d, m, rng) }],
    output: { weight: randomMatrix(m, d, rng) },
  };

  it("is the norm of a channel's producing weights and biases times the norm of its output row", () => {
    const magnitudes = channelMagnitudes(mlp);
    for (let j = 0; j < m; j++) {
      let produced = mlp.inputs[0].bias![j] ** 2;
      for (const l of mlp.inputs) for (let r = 0; r < d; r++) produced += l.weight.data[r * m + j] ** 2;
      let consumed = 0;
      for (let c = 0; c < d; c++) consumed += mlp.output.weight.data[j * d + c] ** 2;
      expect(magnitudes[j]).toBeCloseTo(Math.sqrt(produced * consumed), 10);
    }
  });

  it("among channels of equal GCS (never active: 0) keeps the larger magnitude, and counts them", () => {
    const magnitudes = channelMagnitudes(mlp);
    // Channels 0-3 score highest; the other 8 are dead (GCS exactly 0) and compete for 3 places.
    const scores = Float32Array.from({ length: m }, (_, j) => (j < 4 ? 10 + j : 0));
    const { kept, tie } = selectScpChannels(scores, magnitudes, 7);
    const dead = Array.from({ length: m - 4 }, (_, i) => i + 4).sort((a, b) => magnitudes[b] - magnitudes[a]);
    expect(Array.from(kept)).toEqual([0, 1, 2, 3, ...dead.slice(0, 3)].sort((a, b) => a - b));
    expect(dead.slice(0, 3)).not.toEqual([4, 5, 6]); // the index alone would have chosen otherwise
    expect(tie).toEqual({ tied: 8, bySecondary: 3, byIndex: 0 });
  });

  it("with selection magnitude keeps the largest-norm channels whatever their GCS", () => {
    const magnitudes = channelMagnitudes(mlp);
    const scores = Float32Array.from(magnitudes, (v) => -v); // GCS would keep the smallest
    const { kept } = selectScpChannels(scores, magnitudes, 5, "magnitude");
    const largest = Array.from(magnitudes.keys()).sort((a, b) => magnitudes[b] - magnitudes[a]).slice(0, 5);
    expect(Array.from(kept)).toEqual(largest.sort((a, b) => a - b));
    expect(Array.from(selectScpChannels(scores, magnitudes, 5).kept)).not.toEqual(Array.from(kept));
  });
});

describe("SCP pruning", () => {
  const d = 6;
  const m = 20;
  const rng = normalRng(2);
  const x = randomMatrix(7, d, rng);
  const opt: ChannelMlp = {
    inputs: [{ weight: randomMatrix(d, m, rng), bias: randomMatrix(1, m, rng).data }],
    output: { weight: randomMatrix(m, d, rng), bias: randomMatrix(1, d, rng).data },
  };
  const swiglu: ChannelMlp = {
    inputs: [{ weight: randomMatrix(d, m, rng) }, { weight: randomMatrix(d, m, rng) }],
    output: { weight: randomMatrix(m, d, rng) },
  };

  for (const [name, mlp] of [["OPT (fc1/fc2 with biases)", opt], ["SwiGLU (gate/up/down)", swiglu]] as const) {
    it(`gives the full ${name} MLP's output with the removed channels zeroed`, () => {
      const before = tf.memory().numTensors;
      const stats: ChannelMlpStats = {
        inputs: mlp.inputs.map((l) => ({
          A: denseFactor(randomPsd(d + (l.bias ? 1 : 0), rng)),
          G: denseFactor(randomPsd(m, rng)),
          g: randomMatrix(d + (l.bias ? 1 : 0), m, rng),
          tokens: 1,
        })),
        output: { A: denseFactor(randomPsd(m, rng)), G: denseFactor(randomPsd(d, rng)), g: randomMatrix(m, d, rng), tokens: 1 },
      };
      const { kept } = selectScpChannels(scpScores(mlp, stats, 0.5), channelMagnitudes(mlp), 13);
      const pruned = pruneMlp(mlp, kept);
      for (const l of pruned.inputs) {
        expect([l.weight.rows, l.weight.cols]).toEqual([d, 13]);
        if (l.bias) expect(l.bias.length).toBe(13);
      }
      expect([pruned.output.weight.rows, pruned.output.weight.cols]).toEqual([13, d]);
      const reference = forward(zeroChannels(mlp, kept), x);
      const full = forward(mlp, x);
      expect(maxAbsDiff(forward(pruned, x), reference)).toBeLessThan(1e-5 * maxAbs(reference));
      expect(maxAbsDiff(full, reference)).toBeGreaterThan(1e-3); // the removal does change the MLP
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("keeps every channel unchanged at full width", () => {
    const all = Int32Array.from({ length: m }, (_, j) => j);
    const pruned = pruneMlp(opt, all);
    expect(pruned.inputs[0].weight.data).toEqual(opt.inputs[0].weight.data);
    expect(pruned.output.weight.data).toEqual(opt.output.weight.data);
  });

  it("rejects kept indices that are unsorted or out of range", () => {
    expect(() => pruneMlp(opt, Int32Array.from([3, 1]))).toThrow(
      "SCP kept channels must be strictly ascending indices in [0, 20), found 1 at position 1",
    );
    expect(() => pruneMlp(opt, Int32Array.from([20]))).toThrow("found 20 at position 0");
  });
});
