/**
 * Perplexity windows cover every token once; the model's perplexity equals
 * exp(mean NLL) from a plain forward per window; the add-one unigram
 * reference equals a hand computation.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { modelPerplexity, perplexityWindows, unigramPerplexity } from "../../src/eval/perplexity.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { goldenWithBlocks, referenceLogprob, tokensOf } from "./reference.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("perplexityWindows", () => {
  it("predicts every token but the first exactly once, ctx tokens per full window", () => {
    const stream = Array.from({ length: 10 }, (_, i) => 100 + i);
    const windows = perplexityWindows(stream, 4);
    expect(windows.map((w) => Array.from(w.tokens))).toEqual([
      [100, 101, 102, 103, 104],
      [104, 105, 106, 107, 108],
      [108, 109],
    ]);
    expect(windows.every((w) => w.start === 1)).toBe(true);
    const predicted = windows.flatMap((w) => Array.from(w.tokens).slice(w.start));
    expect(predicted).toEqual(stream.slice(1));
  });

  it("refuses a bad window or a stream too short to predict", () => {
    expect(() => perplexityWindows([1, 2, 3], 0)).toThrow("window length must be a positive integer, got 0");
    expect(() => perplexityWindows([1], 4)).toThrow("at least 2 tokens, got 1");
  });
});

describe("modelPerplexity on the golden OPT", () => {
  const golden = goldenWithBlocks("opt");
  const stream = tokensOf(75, 42, 3, 272);


  /** Mean NLL from one plain forward per window of `ctx` read tokens. */
  function referenceNll(ctx: number): number {
    let sum = 0;
    for (let s = 0; s + 1 < stream.length; s += ctx) {
      sum -= referenceLogprob(golden.model, golden.blocks, stream.slice(s, s + ctx + 1), 1);
    }
    return sum / (stream.length - 1);
  }

  it("equals exp(mean NLL) of a plain forward per window", async () => {
    const before = tf.memory().numTensors;
    const p16 = await modelPerplexity(golden.model, stream, { ctx: 16 });
    const pMax = await modelPerplexity(golden.model, stream, { residency: "streaming", batchTokens: 40 });
    expect(tf.memory().numTensors).toBe(before);
    for (const [p, ctx] of [[p16, 16], [pMax, golden.model.cfg.maxPositions]] as const) {
      expect(p.tokens).toBe(stream.length - 1);
      const nll = referenceNll(ctx);
      expect(Math.abs(p.nll - nll)).toBeLessThan(1e-5);
      expect(p.ppl).toBe(Math.exp(p.nll));
      expect(p.ppl / Math.exp(nll)).toBeCloseTo(1, 4); // a random model: ppl ~ 4e5, so relative
    }
    expect(Math.abs(p16.nll - pMax.nll)).toBeGreaterThan(1e-4); // longer windows, other contexts
  });

  it("refuses a window beyond the model's positions", async () => {
    await expect(modelPerplexity(golden.model, stream, { ctx: 33 })).rejects.toThrow("Perplexity window 33 exceeds the model's 32 positions");
  });
});

describe("unigramPerplexity", () => {
  it("uses add-one counts of the training stream on every token but the first", () => {
    // Counts 0:2, 1:1, 2:0 of N = 3, V = 3: p = 3/6, 2/6, 1/6.
    const p = unigramPerplexity([0, 0, 1], [2, 0, 1, 2], 3);
    const nll = -(Math.log(3 / 6) + Math.log(2 / 6) + Math.log(1 / 6)) / 3;
    expect(p.tokens).toBe(3);
    expect(p.nll).toBeCloseTo(nll, 14);
    expect(p.ppl).toBeCloseTo(Math.exp(nll), 12);
  });

  it("names an id outside the vocabulary", () => {
    expect(() => unigramPerplexity([0, 3], [0, 1], 3)).toThrow("Training token 1 has id 3, outside the vocabulary of 3");
    expect(() => unigramPerplexity([0], [0, 5], 3)).toThrow("Token 1 has id 5");
  });
});
