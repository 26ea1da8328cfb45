import { describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { trainModel } from "../../src/train/gradients.ts";
import { initOptParams, initOptWeights } from "../../src/train/init.ts";
import { flattenWeights, optimizerParams } from "../../src/train/params.ts";
import { tinyConfig } from "./tiny_model.ts";

const model = trainModel(tinyConfig);
const { layout, cfg } = model;
const slot = (key: string) => layout.slots.find((s) => s.key === key)!;
const values = (flat: Float32Array, key: string) => {
  const s = slot(key);
  return flat.subarray(s.offset, s.offset + s.size);
};

describe("initOptParams", () => {
  const flat = initOptParams(layout, cfg, 3);

  it("draws linear weights and embeddings from N(0, 0.02²)", () => {
    const drawn = layout.slots.filter((s) => s.name.endsWith("weight") && !s.name.includes("layer_norm"));
    const all = drawn.flatMap((s) => Array.from(flat.subarray(s.offset, s.offset + s.size)));
    const mean = all.reduce((a, b) => a + b, 0) / all.length;
    const sd = Math.sqrt(all.reduce((a, b) => a + b * b, 0) / all.length);
    expect(all.length).toBeGreaterThan(15_000);
    expect(Math.abs(mean)).toBeLessThan(0.001); // sd of the mean ≈ 0.00016
    expect(Math.abs(sd - 0.02)).toBeLessThan(0.0005); // ≈ 0.02 / √(2n) = 0.00011
    const tail = all.filter((x) => Math.abs(x) > 2 * 0.02).length / all.length;
    expect(Math.abs(tail - 0.0455)).toBeLessThan(0.006); // P(|z| > 2) = 0.0455, sd ≈ 0.0016
  });

  it("zeros biases and the pad row, sets norm weights to one", () => {
    for (const s of layout.slots) {
      const v = flat.subarray(s.offset, s.offset + s.size);
      if (s.name.endsWith(".bias")) expect(v.every((x) => x === 0)).toBe(true);
      else if (s.name.includes("layer_norm")) expect(v.every((x) => x === 1)).toBe(true);
    }
    const embed = values(flat, "model.decoder.embed_tokens.weight"); // [V, d], pad id 1
    expect(embed.subarray(32, 64).every((x) => x === 0)).toBe(true);
    expect(embed.subarray(0, 32).some((x) => x !== 0)).toBe(true);
    expect(embed.subarray(64, 96).some((x) => x !== 0)).toBe(true);
    expect(values(flat, "model.decoder.embed_positions.weight").every((x) => x !== 0)).toBe(true);
  });

  it("is a function of the seed", () => {
    expect(Array.from(initOptParams(layout, cfg, 3))).toEqual(Array.from(flat));
    expect(initOptParams(layout, cfg, 4)[0]).not.toBe(flat[0]);
  });

  it("refuses other architectures", () => {
    expect(() => initOptParams(layout, { ...cfg, modelType: "gpt2" }, 0)).toThrow('got model_type "gpt2"');
  });
});

describe("initOptWeights and the flat layout", () => {
  it("returns kernel-layout WeightMaps that flatten back to the same vector", async () => {
    await initBackend(undefined, true);
    const start = tf.memory().numTensors;
    const { outer, blocks } = initOptWeights(model.arch, cfg, 3);
    expect(blocks.length).toBe(2);
    expect(blocks[1].get("fc1.weight")!.shape).toEqual([32, 64]); // [in, out]
    expect(outer.get("model.decoder.embed_positions.weight")!.shape).toEqual([18, 32]); // 16 + 2 offset
    expect(Array.from(flattenWeights(layout, outer, blocks))).toEqual(Array.from(initOptParams(layout, cfg, 3)));
    tf.dispose([...outer.values(), ...blocks.flatMap((b) => [...b.values()])]);
    expect(tf.memory().numTensors).toBe(start);
  });

  it("counts every parameter once: embeddings, positions, final norm, two blocks", () => {
    const perBlock = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 4 * 32;
    expect(layout.size).toBe(50 * 32 + 18 * 32 + 2 * 32 + 2 * perBlock);
  });

  it("decays the six block matrices only", () => {
    const decayed = optimizerParams(layout).filter((p) => p.decay).map((p) => p.name);
    expect(decayed.length).toBe(12);
    expect(decayed.every((n) => /layers\.\d\.(self_attn\.\w_proj|self_attn\.out_proj|fc1|fc2)\.weight$/.test(n))).toBe(
      true,
    );
  });
});
