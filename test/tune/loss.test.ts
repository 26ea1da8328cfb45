// The tuning loss and its gradients against independent references: the
// masked LM loss of src/model/forward.ts, the multiple-choice scorer of
// src/eval/loglikelihood.ts, autograd through merged weights, and LoRA's
// chain rule.
import { rm } from "node:fs/promises";
import type { Tensor } from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { scoreLoglikelihoods } from "../../src/eval/loglikelihood.ts";
import { forwardLogits, lmLoss } from "../../src/model/forward.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { answerRow, padBatch } from "../../src/train/mc_batches.ts";
import { Prng } from "../../src/train/prng.ts";
import { answerLoss, answerLossAndGradients } from "../../src/train/tune_loop.ts";
import { type ResidentModel, trainableSet } from "../../src/train/tune_params.ts";
import { tempDir, TINY, tinyModel, toyExamples } from "./fixture.ts";

let dir: string;
let handle: ModelHandle;
let model: ResidentModel;

beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await tinyModel(await tempDir("loss"), 7);
  handle = await openModel(dir, { split: { bottom: 1, top: 1 } });
  const blocks: WeightMap[] = [];
  for (let i = 0; i < TINY.layers; i++) blocks.push(await handle.loadBlock(i));
  model = { arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks };
});

afterAll(async () => {
  for (const b of model.blocks) tf.dispose([...b.values()]);
  await handle.close();
  await rm(dir, { recursive: true, force: true });
});

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** The masked-LM reference: every example's full tokens right-padded, mask 1 on its answer tokens. */
function maskedLmLoss(examples: ReturnType<typeof toyExamples>, weights: { outer: WeightMap; blocks: WeightMap[] }): tf.Scalar {
  const length = Math.max(...examples.map((e) => e.tokens.length));
  const ids = new Int32Array(examples.length * length).fill(1);
  const mask = new Float32Array(examples.length * length);
  examples.forEach((e, r) => {
    ids.set(e.tokens, r * length);
    mask.fill(1, r * length + e.start, r * length + e.tokens.length);
  });
  const idsT = tf.tensor2d(ids, [examples.length, length], "int32");
  const logits = forwardLogits(model.arch, model.cfg, weights.outer, weights.blocks, idsT);
  return lmLoss(logits, idsT, tf.tensor2d(mask, [examples.length, length])) as tf.Scalar;
}

describe("answer loss", () => {
  test("equals the masked LM loss of src/model/forward.ts on untruncated rows", () => {
    const examples = toyExamples(6);
    const rows = examples.map((e) => answerRow(e, TINY.maxPositions, TINY.vocabSize, e.id));
    const batch = padBatch(rows, [0, 1, 2, 3, 4, 5], 1);
    const [ours, reference] = tf.tidy(() => [
      answerLoss(model.arch, model.cfg, model.outer, model.blocks, batch).dataSync()[0],
      maskedLmLoss(examples, model).dataSync()[0],
    ]);
    expect(Math.abs(ours - reference)).toBeLessThan(1e-5);
  });

  test("truncates on the left as the scorer does: equals its log-likelihood on a too-long row", async () => {
    const context = Array.from({ length: TINY.maxPositions + 6 }, (_, i) => 10 + (i % 25));
    const request = { tokens: [2, ...context, 31, 35], start: 1 + context.length };
    const row = answerRow(request, TINY.maxPositions, TINY.vocabSize, "long");
    expect(row.input.length).toBe(TINY.maxPositions);
    const [scored] = await scoreLoglikelihoods(handle, [request]);
    const ours = tf.tidy(() => answerLoss(model.arch, model.cfg, model.outer, model.blocks, padBatch([row], [0], 1)).dataSync()[0]);
    expect(Math.abs(ours - -scored.logprob / 2)).toBeLessThan(1e-5);
  });

  test("rejects an answer without a context token, or longer than the model's positions", () => {
    expect(() => answerRow({ tokens: [5, 6], start: 0 }, 24, 40, "Item x")).toThrow(/Item x: the answer starts at token 0 of 2/);
    expect(() => answerRow({ tokens: [2, ...new Array(30).fill(5)], start: 1 }, 24, 40, "Item y")).toThrow(/30 tokens, more than the model's 24/);
    expect(() => answerRow({ tokens: [2, 50], start: 1 }, 24, 40, "Item z")).toThrow(/token 1 is 50, outside the vocabulary of 40/);
  });
});

describe("gradients of the trainable set", () => {
  const examples = toyExamples(5, 1);
  const batch = () => padBatch(examples.map((e) => answerRow(e, TINY.maxPositions, TINY.vocabSize, e.id)), [0, 1, 2, 3, 4], 1);

  test("full adapter tuning: equal autograd of the masked LM loss w.r.t. the adapter blocks' weights", () => {
    const before = tf.memory().numTensors;
    const trainable = trainableSet(model, { blocks: [0, 3], embeddings: false });
    const params = trainable.initial(0);
    const grads = new Float32Array(params.length);
    const loss = answerLossAndGradients(model, trainable, params, batch(), grads);
    const names = ["fc1.weight", "self_attn_layer_norm.bias", "self_attn.q_proj.weight"];
    for (const block of [0, 3]) {
      const refs = tf.tidy(() => {
        const ws = names.map((n) => model.blocks[block].get(n)!);
        const f = (...w: Tensor[]) => {
          const blocks = model.blocks.map((b, i) => (i === block ? new Map([...b, ...names.map((n, k) => [n, w[k]] as const)]) : b));
          return maskedLmLoss(examples, { outer: model.outer, blocks });
        };
        return tf.grads(f)(ws).map((g) => g.dataSync() as Float32Array);
      });
      names.forEach((name, k) => {
        const slot = trainable.layout.slots.find((s) => s.part === block && s.name === name)!;
        const ours = grads.subarray(slot.offset, slot.offset + slot.size);
        const scale = Math.max(...refs[k].map(Math.abs));
        expect(scale).toBeGreaterThan(0);
        expect(maxAbsDiff(ours, refs[k]) / scale).toBeLessThan(1e-3);
      });
    }
    expect(loss).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
  });

  test("LoRA: dA = s·dW·Bᵀ and dB = s·Aᵀ·dW at W + s·A B", () => {
    const lora = { rank: 2, alpha: 6 };
    const s = lora.alpha / lora.rank;
    const trainable = trainableSet(model, { blocks: [0, 3], lora, embeddings: false });
    const params = trainable.initial(3);
    const prng = new Prng(11);
    for (const slot of trainable.layout.slots) {
      if (slot.name.endsWith(".lora_b")) for (let i = 0; i < slot.size; i++) params[slot.offset + i] = 0.3 * prng.normal();
    }
    const grads = new Float32Array(params.length);
    answerLossAndGradients(model, trainable, params, batch(), grads);
    const slotOf = (block: number, name: string) => trainable.layout.slots.find((x) => x.part === block && x.name === name)!;
    const values = (block: number, name: string) => {
      const slot = slotOf(block, name);
      return tf.tensor2d(params.slice(slot.offset, slot.offset + slot.size), slot.shape as [number, number]);
    };
    /** The blocks with every LoRA update merged in, one linear's weight replaced by `override.w`. */
    const merged = (override: { block: number; linear: string; w: Tensor }) =>
      model.blocks.map((m, i) => {
        if (i !== 0 && i !== 3) return m;
        const own = new Map(m);
        for (const spec of model.arch.linears(model.cfg)) {
          const name = `${spec.name}.weight`;
          const update = tf.mul(tf.matMul(values(i, `${spec.name}.lora_a`), values(i, `${spec.name}.lora_b`)), s);
          own.set(name, i === override.block && spec.name === override.linear ? override.w : tf.add(m.get(name)!, update));
        }
        return own;
      });
    for (const [block, linear] of [[0, "fc2"], [3, "self_attn.v_proj"]] as const) {
      const [refA, refB] = tf.tidy(() => {
        const a = values(block, `${linear}.lora_a`);
        const b = values(block, `${linear}.lora_b`);
        const effective = tf.add(model.blocks[block].get(`${linear}.weight`)!, tf.mul(tf.matMul(a, b), s));
        const dW = tf.grad((w: Tensor) => maskedLmLoss(examples, { outer: model.outer, blocks: merged({ block, linear, w }) }))(effective);
        return [
          tf.mul(tf.matMul(dW, b, false, true), s).dataSync() as Float32Array, // [in, out]·[out, r]
          tf.mul(tf.matMul(a, dW, true, false), s).dataSync() as Float32Array, // [r, in]·[in, out]
        ];
      });
      for (const [name, ref] of [[`${linear}.lora_a`, refA], [`${linear}.lora_b`, refB]] as const) {
        const slot = slotOf(block, name);
        const scale = Math.max(...ref.map(Math.abs));
        expect(scale).toBeGreaterThan(0);
        expect(maxAbsDiff(grads.subarray(slot.offset, slot.offset + slot.size), ref) / scale).toBeLessThan(1e-3);
      }
    }
  });
});
