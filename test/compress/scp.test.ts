import { beforeAll, describe, expect, it } from "vitest";
import { pruneMlp, selectScpChannels } from "../../src/compress/scp.ts";
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
    const kept = selectScpChannels(scores, width);
    const removed = Array.from(scores.keys()).sort((a, b) => scores[a] - scores[b]).slice(0, 50 - width);
    const expected = Array.from(scores.keys()).filter((j) => !removed.includes(j));
    expect(Array.from(kept)).toEqual(expected);
  });

  it("rejects a width outside [1, m] and NaN scores", () => {
    expect(() => selectScpChannels(new Float32Array(4), 5)).toThrow("SCP width must be an integer in [1, 4], got 5");
    expect(() => selectScpChannels(Float32Array.from([1, NaN, 2]), 2)).toThrow("SCP score of channel 1 is NaN");
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
      const kept = selectScpChannels(scpScores(mlp, stats, 0.5), 13);
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
