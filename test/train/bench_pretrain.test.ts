import { describe, expect, it } from "vitest";
import { BASE_SHAPE, modelFlopsUtilisation } from "../../src/train/bench_pretrain.ts";
import { trainModel } from "../../src/train/gradients.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";

describe("bench pretrain", () => {
  it("MFU is 6 · parameters · tokens/s over the peak", () => {
    // 4 M parameters at 2,000 tokens/s are 48 GFLOP/s: 40% of a 120 GFLOP/s peak.
    expect(modelFlopsUtilisation(4e6, 2000, 120)).toBeCloseTo(0.4, 12);
    expect(() => modelFlopsUtilisation(4e6, 2000, 0)).toThrow(/Peak rate must be positive, got 0 GFLOP\/s/);
  });

  it("times the shape fixtures/base is trained at: 16 blocks, so 2 + 2 adapter blocks leave 12 middle ones", () => {
    const model = trainModel(optConfigJson(BASE_SHAPE, "float32"));
    expect(model.cfg.layers - 4).toBe(12);
    // 16 blocks × 198,272 (4 projections 128·128+128, fc1/fc2 with biases, 2 LayerNorms)
    // + tied embedding 6016·128 + 130 positions·128 + final LayerNorm 256.
    expect(model.layout.size).toBe(16 * 198_272 + 6016 * 128 + 130 * 128 + 256);
  });
});
