import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { addScaled, type GradientEngine, splitRows, startDataParallel, weightedSum } from "../../src/train/data_parallel.ts";
import { batchLoss, lossAndGradients, trainModel } from "../../src/train/gradients.ts";
import { initOptParams } from "../../src/train/init.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { flattenWeights, weightsFromFlat } from "../../src/train/params.ts";
import { tinyBatch, tinyConfig } from "./tiny_model.ts";

const model = trainModel(tinyConfig);
const params = initOptParams(model.layout, model.cfg, 11);
const batch = tinyBatch(5, 12);

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

beforeAll(async () => {
  await initBackend(undefined, true);
});

describe("lossAndGradients", () => {
  it("agrees with central finite differences of the loss (top 5 coordinates of six tensors)", () => {
    const start = tf.memory().numTensors;
    const grads = new Float32Array(model.layout.size);
    // Weights of std 0.1 rather than 0.02, so attention is far from uniform and
    // every tensor's gradient stands well above float32 rounding of the loss.
    const theta = params.map((x) => 5 * x);
    const loss = lossAndGradients(model, theta, batch, grads);
    expect(loss).toBeCloseTo(batchLoss(model, theta, batch), 5);
    const kinds = [
      "model.decoder.embed_tokens.weight",
      "model.decoder.embed_positions.weight",
      "model.decoder.layers.0.self_attn.q_proj.weight",
      "model.decoder.layers.1.fc2.bias",
      "model.decoder.layers.1.self_attn_layer_norm.weight",
      "model.decoder.final_layer_norm.bias",
    ];
    const h = 1e-3;
    for (const key of kinds) {
      const s = model.layout.slots.find((x) => x.key === key)!;
      const top = Array.from({ length: s.size }, (_, i) => s.offset + i)
        .sort((i, j) => Math.abs(grads[j]) - Math.abs(grads[i]))
        .slice(0, 5);
      for (const i of top) {
        const p = theta.slice();
        p[i] = theta[i] + h;
        const up = batchLoss(model, p, batch);
        p[i] = theta[i] - h;
        const down = batchLoss(model, p, batch);
        const numeric = (up - down) / (2 * h);
        // 2% of the value plus the float32 rounding of the loss over 2h (≈ 1e-6 / 2e-3).
        expect(Math.abs(numeric - grads[i]), `${key}[${i - s.offset}]`).toBeLessThan(0.02 * Math.abs(grads[i]) + 1e-3);
      }
    }
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe("micro-batches", () => {
  it("sum to the whole-batch loss and gradient (5 rows as 2 + 2 + 1) and free every tensor", () => {
    const start = tf.memory().numTensors;
    const whole = new Float32Array(model.layout.size);
    const split = new Float32Array(model.layout.size);
    const loss = lossAndGradients(model, params, batch, whole);
    expect(lossAndGradients(model, params, batch, split, 2)).toBeCloseTo(loss, 5);
    expect(maxRelDiff(split, whole)).toBeLessThan(1e-5);
    expect(batchLoss(model, params, batch, 2)).toBeCloseTo(loss, 5);
    expect(tf.memory().numTensors).toBe(start);
    expect(() => lossAndGradients(model, params, batch, split, 0)).toThrow(
      "Micro-batch size must be a positive integer, got 0",
    );
  });
});

describe("data-parallel gradients", () => {
  let engine: GradientEngine;
  beforeAll(async () => {
    engine = await startDataParallel(model, 2, 2);
  });
  afterAll(async () => {
    await engine.close();
  });

  it("sum weighted gradients with the bits of zeroing then adding part by part, for 1, 2 and 3 parts", () => {
    const n = 1001;
    const parts = [0, 1, 2].map((k) => Float32Array.from({ length: n }, (_, i) => (i % 17 === 0 ? -0 : Math.sin(i * (k + 1.3)) * 10 ** (i % 7 - 3))));
    const weights = [0.3, 0.45, 0.25];
    for (let count = 1; count <= 3; count++) {
      const expected = new Float32Array(n); // the reference: one addScaled pass per part
      for (let j = 0; j < count; j++) addScaled(expected, weights[j], parts[j]);
      const got = new Float32Array(n).fill(7); // stale values must not leak in
      weightedSum(parts.slice(0, count), weights.slice(0, count), got);
      expect(got).toEqual(expected);
      expect(got.every((v, i) => Object.is(v, expected[i]))).toBe(true); // and the sign of each zero
    }
    expect(() => weightedSum([parts[0], new Float32Array(3)], [0.5, 0.5], new Float32Array(n))).toThrow(/3 values cannot add into 1001/);
  });

  it("split rows evenly and contiguously", () => {
    expect(splitRows(5, 2)).toEqual([[0, 2], [2, 5]]);
    expect(splitRows(2, 4)).toEqual([[0, 1], [1, 2]]);
    expect(splitRows(9, 3)).toEqual([[0, 3], [3, 6], [6, 9]]);
  });

  it("equal the whole-batch gradient computed in one thread (2 + 3 rows, micro-batches of 2)", async () => {
    const local = new Float32Array(model.layout.size);
    const localLoss = lossAndGradients(model, params, batch, local);
    const parallel = new Float32Array(model.layout.size);
    const loss = await engine.gradients(params, batch, parallel);
    expect(loss).toBeCloseTo(localLoss, 5);
    expect(maxRelDiff(parallel, local)).toBeLessThan(1e-5);
    expect(await engine.loss(params, batch)).toBeCloseTo(localLoss, 5);
  });

  it("see the parameters of each call, and repeat bit for bit", async () => {
    const moved = params.map((x, i) => x + (i % 3 === 0 ? 0.01 : 0));
    const a = new Float32Array(model.layout.size);
    const b = new Float32Array(model.layout.size);
    const la = await engine.gradients(moved, batch, a);
    await engine.gradients(params, batch, b);
    const lb = await engine.gradients(moved, batch, b);
    expect(lb).toBe(la);
    expect(b).toEqual(a);
    expect(la).not.toBe(await engine.loss(params, batch));
  });

  it("report a replica's error with the worker named", async () => {
    await expect(engine.gradients(params, tinyBatch(2, 20), new Float32Array(model.layout.size))).rejects.toThrow(
      /Worker [01] failed: .*Context 20 exceeds the model's 16 positions/,
    );
  });
});

describe("batchLoss with kept blocks", () => {
  it("is the loss of the model made of those blocks alone (a LayerDrop of the same weights)", () => {
    const deep = trainModel(optConfigJson({
      layers: 4, hidden: 32, heads: 4, ffn: 64, maxPositions: 16, vocabSize: 50, bosId: 2, eosId: 2, padId: 1,
    }));
    const shallow = trainModel(optConfigJson({
      layers: 2, hidden: 32, heads: 4, ffn: 64, maxPositions: 16, vocabSize: 50, bosId: 2, eosId: 2, padId: 1,
    }));
    const theta = initOptParams(deep.layout, deep.cfg, 5).map((x) => 5 * x);
    const { outer, blocks } = weightsFromFlat(deep.layout, theta);
    const kept = flattenWeights(shallow.layout, outer, [blocks[0], blocks[3]]);
    tf.dispose([...outer.values(), ...blocks.flatMap((b) => [...b.values()])]);
    const dropped = batchLoss(deep, theta, batch, batch.batch, [0, 3]);
    expect(dropped).toBeCloseTo(batchLoss(shallow, kept, batch), 5); // float32 sums of ~7: 1e-6 relative
    expect(Math.abs(dropped - batchLoss(deep, theta, batch))).toBeGreaterThan(1e-3);
    expect(batchLoss(deep, theta, batch, 5, [0, 1, 2, 3])).toBe(batchLoss(deep, theta, batch, 5));
    expect(() => batchLoss(deep, theta, batch, 5, [0, 4])).toThrow(/Block 4 is not among the model's 4 blocks/);
  });
});
