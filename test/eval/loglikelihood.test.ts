/**
 * The batched log-likelihood engine against PyTorch's logits (golden
 * fixtures) and against a plain one-sequence forward; padding, batching,
 * streaming and truncation must not change a score.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { type LoglikelihoodRequest, scoreLoglikelihoods } from "../../src/eval/loglikelihood.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { readGolden } from "../model/golden.ts";
import { goldenWithBlocks, logSoftmaxAt, openGolden, referenceLogprob, tokensOf } from "./reference.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

function decodeF32(b64: string): Float32Array {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

describe("scoreLoglikelihoods against torch (golden fixtures)", () => {
  for (const name of ["opt", "opt_post_ln", "gpt2", "llama"]) {
    it(`${name}: continuation log-likelihoods equal log-softmax sums of the torch logits`, async () => {
      const golden = readGolden(name);
      const [, t, v] = golden.logits.shape;
      const logits = decodeF32(golden.logits.f32); // [B, T, V]
      const requests: LoglikelihoodRequest[] = golden.input_ids.map((ids, b) => ({
        tokens: ids,
        start: golden.loss_mask[b].indexOf(1),
      }));
      const expected = requests.map((r, b) => {
        let sum = 0;
        for (let i = r.start; i < t; i++) {
          sum += logSoftmaxAt(logits.subarray((b * t + i - 1) * v, (b * t + i) * v), golden.input_ids[b][i]);
        }
        return sum;
      });
      const model = await openGolden(name);
      const before = tf.memory().numTensors;
      try {
        const got = await scoreLoglikelihoods(model, requests);
        got.forEach((g, b) => {
          expect(g.tokens).toBe(t - requests[b].start);
          expect(Math.abs(g.logprob - expected[b])).toBeLessThan(1e-4);
        });
        const tokens = got.reduce((s, g) => s + g.tokens, 0);
        expect(-got.reduce((s, g) => s + g.logprob, 0) / tokens).toBeCloseTo(golden.loss_masked, 4);
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        await model.close();
      }
    });
  }
});

describe("scoreLoglikelihoods batching", () => {
  const golden = goldenWithBlocks("opt");
  // Lengths 3..21 so batches need right padding; starts anywhere after the first token.
  const requests: LoglikelihoodRequest[] = [3, 11, 7, 21, 5, 16, 9].map((n, i) => ({
    tokens: tokensOf(n, 100 + i, 3, 272),
    start: 1 + (i * 5) % (n - 1),
  }));
  let reference: number[];

  beforeAll(async () => {
    reference = requests.map((r) => referenceLogprob(golden.model, golden.blocks, r.tokens as number[], r.start));
  });

  it("padded batches, one request per batch and streaming waves all give the plain forward's scores", async () => {
    const before = tf.memory().numTensors;
    const padded = await scoreLoglikelihoods(golden.model, requests, { batchTokens: 4096, padId: 5 });
    const single = await scoreLoglikelihoods(golden.model, requests, { batchTokens: 1 });
    const streamed = await scoreLoglikelihoods(golden.model, requests, { residency: "streaming", batchTokens: 24, waveTokens: 40 });
    expect(tf.memory().numTensors).toBe(before);
    // Batch shape and padding change the order of the float32 sums inside the matmuls, so each
    // term of a score (a logit minus a log-sum-exp) is rounded differently: a few units of
    // roundoff u = 2^-24 relative to the term. Every term is negative, so their magnitudes add up
    // to |score|, and the scores agree to a small multiple of u·|score| (measured: ≤ 5u on
    // OpenBLAS and on the pure-TS fallback; the bound is 32u). A padding or masking bug moves a
    // score by a sizeable fraction of a nat, thousands of times the bound.
    const close = (a: number, b: number) => Math.abs(a - b) <= 32 * 2 ** -24 * Math.abs(b);
    requests.forEach((r, i) => {
      expect(padded[i].tokens).toBe(r.tokens.length - r.start);
      expect(Math.abs(padded[i].logprob - reference[i])).toBeLessThan(1e-4);
      expect(close(padded[i].logprob, single[i].logprob), `request ${i}: padded ${padded[i].logprob} vs single ${single[i].logprob}`).toBe(true);
      expect(close(streamed[i].logprob, single[i].logprob), `request ${i}: streamed ${streamed[i].logprob} vs single ${single[i].logprob}`).toBe(true);
    });
  });

  it("reports progress up to every request", async () => {
    const seen: number[] = [];
    let tokens = 0;
    await scoreLoglikelihoods(golden.model, requests, { batchTokens: 30, events: { next: (e) => {
      expect(e.stage).toBe("loglikelihood");
      expect(e.total).toBe(requests.length);
      expect(e.seconds).toBeGreaterThanOrEqual(0);
      seen.push(e.done!);
      tokens += e.tokens!;
    } } });
    expect(seen.length).toBeGreaterThan(1);
    // every request's tokens are forwarded once (padding included)
    expect(tokens).toBeGreaterThanOrEqual(requests.reduce((n, r) => n + Math.min(r.tokens.length - 1, golden.model.cfg.maxPositions), 0));
    expect(seen.at(-1)).toBe(requests.length);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });

  it("truncates from the left past the model's positions", async () => {
    const max = golden.model.cfg.maxPositions; // 32
    const tokens = tokensOf(max + 9, 7, 3, 272); // input of max + 8 tokens: 8 dropped
    const start = max;
    const [got] = await scoreLoglikelihoods(golden.model, [{ tokens, start }]);
    const expected = referenceLogprob(golden.model, golden.blocks, tokens.slice(8), start - 8);
    expect(got.tokens).toBe(tokens.length - start);
    expect(Math.abs(got.logprob - expected)).toBeLessThan(1e-4);
    const shorter = referenceLogprob(golden.model, golden.blocks, tokens.slice(10), start - 10);
    expect(Math.abs(got.logprob - shorter)).toBeGreaterThan(1e-3);
  });

  it("rejects requests it cannot score, naming them", async () => {
    const max = golden.model.cfg.maxPositions;
    await expect(scoreLoglikelihoods(golden.model, [{ tokens: [4, 5, 6], start: 0 }])).rejects.toThrow("Request 0 has continuation start 0");
    await expect(scoreLoglikelihoods(golden.model, [requests[0], { tokens: [4, 5], start: 2 }])).rejects.toThrow("Request 1");
    const long = tokensOf(max + 3, 1, 3, 272);
    await expect(scoreLoglikelihoods(golden.model, [{ tokens: long, start: 2 }])).rejects.toThrow(
      `has a ${max + 1}-token continuation, longer than the model's ${max} positions`,
    );
    await expect(scoreLoglikelihoods(golden.model, [{ tokens: [4, 272], start: 1 }])).rejects.toThrow("token id 272 at 1, outside the vocabulary of 272");
    await expect(scoreLoglikelihoods(golden.model, requests, { padId: 300 })).rejects.toThrow("Pad id 300");
  });
});
