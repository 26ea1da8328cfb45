// Adapter tuning against PyTorch: the answer loss on the four golden models
// (fixtures/golden, torch's masked loss), and three full AdamW steps on the
// OPT golden (test/tune/golden/make_tune_golden.py).
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readManifest } from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { answerRow, padBatch, type TuneExample } from "../../src/train/mc_batches.ts";
import { tuneAdapter } from "../../src/train/tune.ts";
import { answerLoss } from "../../src/train/tune_loop.ts";
import { fixtureDir, readGolden } from "../model/golden.ts";
import { tempDir } from "./fixture.ts";

interface GoldenArray {
  shape: number[];
  f32: string;
}

const decode = (a: GoldenArray) => new Float32Array(Uint8Array.from(atob(a.f32), (c) => c.charCodeAt(0)).buffer);

/** The fixture's sequences as training examples: each answer is its loss-masked tail. */
function goldenExamples(name: string): TuneExample[] {
  const golden = readGolden(name);
  return golden.input_ids.map((tokens, r) => ({ id: `${name}-${r}`, tokens, start: golden.loss_mask[r].indexOf(1) }));
}

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await tempDir("golden");
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("answer loss against torch", () => {
  for (const name of ["opt", "opt_post_ln", "gpt2", "llama"]) {
    test(`${name}: equals torch's masked cross-entropy (head on the answer positions only)`, async () => {
      const model = await openModel(fixtureDir(name), { split: { bottom: 0, top: 0 } });
      const blocks: WeightMap[] = [];
      for (let i = 0; i < model.cfg.layers; i++) blocks.push(await model.loadBlock(i));
      try {
        const rows = goldenExamples(name).map((e) => answerRow(e, model.cfg.maxPositions, model.cfg.vocabSize, e.id));
        const loss = tf.tidy(() => answerLoss(model.arch, model.cfg, model.outer, blocks, padBatch(rows, [0, 1], 0)).dataSync()[0]);
        expect(Math.abs(loss - readGolden(name).loss_masked)).toBeLessThan(5e-6);
      } finally {
        for (const b of blocks) tf.dispose([...b.values()]);
        await model.close();
      }
    });
  }
});

describe("three adapter-tuning steps against torch", () => {
  const golden = JSON.parse(readFileSync(new URL("./golden/tune_steps.json", import.meta.url), "utf8")) as {
    format: string;
    steps: number;
    lr: number;
    clip: number;
    answer_start: number[];
    losses: number[];
    block0_after: Record<string, GoldenArray>;
  };

  test("losses and the tuned adapter block match torch AdamW with clipping", async () => {
    expect(golden.format).toBe("offtune-golden");
    const examples = goldenExamples("opt");
    expect(examples.map((e) => e.start)).toEqual(golden.answer_start);
    const out = join(root, "adapter");
    const model = await openModel(fixtureDir("opt"), { split: { bottom: 1, top: 0 } });
    try {
      const summary = await tuneAdapter(model, {
        examples,
        padId: 1,
        out,
        hyper: {
          epochs: golden.steps,
          batch: 2,
          lr: golden.lr,
          schedule: "constant",
          warmup: 0,
          weightDecay: 0,
          clipNorm: golden.clip,
        },
      });
      // One full-batch step per epoch: each epoch's loss is that step's.
      summary.epochLoss.forEach((loss, k) => expect(Math.abs(loss - golden.losses[k]) / golden.losses[k]).toBeLessThan(1e-4));
    } finally {
      await model.close();
    }
    const manifest = await readManifest(out);
    expect(manifest.shards.map((s) => s.block)).toEqual([0]);
    const { tensors } = await readShardFile(join(out, manifest.shards[0].file));
    expect(tensors.map((t) => t.name).sort()).toEqual(Object.keys(golden.block0_after).sort());
    for (const t of tensors) {
      // The key bias has zero gradient in exact arithmetic (softmax ignores a shift q·b shared by all
      // keys); AdamW turns each side's rounding noise into lr-sized steps, so it cannot be compared.
      if (t.name === "self_attn.k_proj.bias") continue;
      const want = decode(golden.block0_after[t.name]);
      const [rows, cols] = t.shape;
      // HF stores the linears [out, in]; the shard holds kernel layout [in, out].
      const hf = t.shape.length === 2 ? Float32Array.from({ length: t.data.length }, (_, k) => t.data[(k % rows) * cols + Math.floor(k / rows)]) : t.data;
      // Adam divides the gradient by √v + ε (ε = 1e-8): where a weight's gradient is itself
      // near ε, the float32 rounding of the gradient (which differs with the summation order of
      // OpenBLAS, the pure-TS fallback and torch) decides that weight's step. Those weights are
      // few; each still moves at most lr a step (|m̂/(√v̂+ε)| ≤ 1 in these three steps), so they
      // stay within 2·steps·lr of torch. Every other weight agrees to 1e-4 of the tensor's scale.
      let scale = 0;
      hf.forEach((_, k) => (scale = Math.max(scale, Math.abs(want[k]))));
      let off = 0;
      let worst = 0;
      hf.forEach((x, k) => {
        const diff = Math.abs(x - want[k]);
        if (diff >= 1e-4 * scale) off++;
        worst = Math.max(worst, diff);
      });
      expect(off, `${t.name}: weights off by 1e-4 of the scale ${scale}`).toBeLessThanOrEqual(Math.max(1, 1e-3 * hf.length));
      expect(worst, t.name).toBeLessThan(2 * golden.steps * golden.lr);
    }
  });
});
