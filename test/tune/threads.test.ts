// Adapter tuning on several threads (docs/DISTRIBUTED.md "How tune and eval use
// the cores"): the micro-batches' gradients sum to the whole step's (weighted by
// answer tokens, not rows), and a run on 2 or 3 threads writes the adapter of
// the one-thread run, bit for bit, full and LoRA, with the embeddings tuned too.
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main as fullFt } from "../../pipelines/full_ft.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { readManifest } from "../../src/io/manifest.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { answerRow, microBatchesAt } from "../../src/train/mc_batches.ts";
import { tuneAdapter, type TuneAdapterOptions } from "../../src/train/tune.ts";
import { answerWeights, inThreadTuneEngine, startTuneEngine } from "../../src/train/tune_engine.ts";
import { answerLossAndGradients } from "../../src/train/tune_loop.ts";
import { type ResidentModel, trainableSet } from "../../src/train/tune_params.ts";
import { tempDir, TINY, tinyModel, toyExamples } from "./fixture.ts";

let root: string;
let modelDir: string;

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await tempDir("threads");
  modelDir = await tinyModel(join(root, "model"), 5);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("a step's micro-batches", () => {
  test("are cut by the settings alone, and their token-weighted gradients sum to the whole step's", async () => {
    const handle = await openModel(modelDir, { split: { bottom: 1, top: 1 } });
    const blocks: WeightMap[] = [];
    for (let i = 0; i < TINY.layers; i++) blocks.push(await handle.loadBlock(i));
    const model: ResidentModel = { arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks };
    try {
      const rows = toyExamples(11).map((e) => answerRow(e, TINY.maxPositions, TINY.vocabSize, e.id));
      const parts = microBatchesAt(rows, 1, 8, 3, 0, 1); // step 1 of ⌈11/8⌉ = 2: the epoch's last 3 items
      expect(parts.map((p) => p.rows)).toEqual([3]);
      const step0 = microBatchesAt(rows, 0, 8, 3, 0, 1);
      expect(step0.map((p) => p.rows)).toEqual([3, 3, 2]);
      // the toy answers hold 1 or 2 tokens: weights by answer tokens differ from weights by rows
      const weights = answerWeights(step0);
      expect(weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      expect(weights).not.toEqual(step0.map((p) => p.rows / 8));

      const trainable = trainableSet(model, { blocks: [0, 3], embeddings: false });
      const params = trainable.initial(0);
      const whole = new Float32Array(params.length);
      const all = microBatchesAt(rows, 0, 8, 8, 0, 1);
      expect(all).toHaveLength(1);
      const wholeLoss = answerLossAndGradients(model, trainable, params, all[0], whole);
      const split = new Float32Array(params.length);
      const splitLoss = await inThreadTuneEngine(model, trainable).gradients(params, step0, split);
      expect(splitLoss).toBeCloseTo(wholeLoss, 5);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < whole.length; i++) {
        scale = Math.max(scale, Math.abs(whole[i]));
        diff = Math.max(diff, Math.abs(whole[i] - split[i]));
      }
      expect(scale).toBeGreaterThan(0);
      expect(diff / scale).toBeLessThan(1e-5);
    } finally {
      for (const b of blocks) tf.dispose([...b.values()]);
      await handle.close();
    }
  });

  test("on a pool, give the in-thread gradient bit for bit, whichever slot computes which", async () => {
    const handle = await openModel(modelDir, { split: { bottom: 1, top: 1 } });
    const blocks: WeightMap[] = [];
    for (let i = 0; i < TINY.layers; i++) blocks.push(await handle.loadBlock(i));
    const model: ResidentModel = { arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks };
    const trainable = trainableSet(model, { blocks: [0, 3], lora: { rank: 2, alpha: 4 }, embeddings: true });
    const engine = await startTuneEngine(model, trainable, 2, 4);
    try {
      const rows = toyExamples(16).map((e) => answerRow(e, TINY.maxPositions, TINY.vocabSize, e.id));
      const params = trainable.initial(1);
      const expected = new Float32Array(params.length);
      const got = new Float32Array(params.length);
      for (const step of [0, 1]) {
        const parts = microBatchesAt(rows, step, 8, 2, 3, 1); // 4 parts over 2 slots
        const a = await inThreadTuneEngine(model, trainable).gradients(params, parts, expected);
        const b = await engine.gradients(params, parts, got);
        expect(b).toBe(a);
        expect(Buffer.from(got.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
        params.forEach((x, i) => (params[i] = x - 0.01 * expected[i])); // the next step sees other parameters
      }
      expect(engine.threads).toBe(2);
    } finally {
      await engine.close();
      for (const b of blocks) tf.dispose([...b.values()]);
      await handle.close();
    }
  });

  test("bad thread counts and micro-batch sizes are refused", async () => {
    const handle = await openModel(modelDir, { split: { bottom: 1, top: 1 } });
    try {
      const model: ResidentModel = { arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks: [] };
      const trainable = trainableSet(model, { blocks: [], embeddings: true });
      await expect(startTuneEngine(model, trainable, 0, 2)).rejects.toThrow("Tuning threads must be a positive integer, got 0");
      await expect(startTuneEngine(model, trainable, 1.5, 2)).rejects.toThrow("got 1.5");
      expect(() => microBatchesAt([], 0, 8, 0, 0, 1)).toThrow("Micro-batch size must be a positive integer, got 0");
    } finally {
      await handle.close();
    }
  });
});

/** Every file of a package but its manifest (which records the time it was made), by name. */
async function packageFiles(dir: string): Promise<Map<string, Buffer>> {
  const names = (await readdir(dir)).filter((n) => n !== "manifest.msgpack").sort();
  return new Map(await Promise.all(names.map(async (n) => [n, await readFile(join(dir, n))] as const)));
}

async function tune(out: string, options: Partial<TuneAdapterOptions>) {
  const handle = await openModel(modelDir, { split: { bottom: 1, top: 1 } });
  try {
    return await tuneAdapter(handle, {
      examples: toyExamples(20),
      padId: 1,
      out,
      hyper: { epochs: 2, batch: 8, microBatch: 3, lr: 2e-2, warmup: 1 },
      ...options,
    });
  } finally {
    await handle.close();
  }
}

describe("tuneAdapter on threads", () => {
  for (const [name, options] of [
    ["full, embeddings too", { tuneEmbeddings: true }],
    ["LoRA", { lora: { rank: 2, alpha: 4 } }],
  ] as const) {
    test(`${name}: 2 and 3 threads write the one-thread adapter's bytes`, async () => {
      const one = await tune(join(root, `${name}-1`), { ...options, workers: 1 });
      const files = await packageFiles(one.dir);
      expect(files.size).toBeGreaterThan(0);
      for (const workers of [2, 3]) {
        const many = await tune(join(root, `${name}-${workers}`), { ...options, workers });
        expect(many.epochLoss).toEqual(one.epochLoss);
        const got = await packageFiles(many.dir);
        expect([...got.keys()]).toEqual([...files.keys()]);
        for (const [file, bytes] of files) expect(got.get(file)!.equals(bytes), file).toBe(true);
        const [a, b] = await Promise.all([readManifest(one.dir), readManifest(many.dir)]);
        expect(b.shards).toEqual(a.shards);
      }
    });
  }
});

describe("stopping a run on threads", () => {
  test("checkpoints, closes the pool, and resumes on one thread to the uninterrupted run's bytes", async () => {
    const whole = join(root, "stop-whole");
    const parts = join(root, "stop-parts");
    await tune(whole, { workers: 1 });
    let steps = 0;
    const first = await tune(parts, { workers: 2, shouldStop: () => ++steps === 2 });
    expect(first).toMatchObject({ stopped: true, step: 2 });
    const second = await tune(parts, { workers: 1, resume: true });
    expect(second).toMatchObject({ stopped: false, step: 6 });
    const [a, b] = await Promise.all([packageFiles(whole), packageFiles(parts)]);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [file, bytes] of a) expect(b.get(file)!.equals(bytes), file).toBe(true);
  });
});

describe("offtune tune --workers on fixtures/tiny", () => {
  const args = (out: string, workers: string) => [
    "--emulator", "fixtures/tiny", "--split", "1,1", "--task", "wordnet_antonym", "--limit", "24", "--epochs", "1", "--batch", "8",
    "--out", out, "--workers", workers, "--quiet",
  ];

  test("writes the one-thread adapter's bytes on 2 threads", async () => {
    const one = join(root, "cli-1");
    const two = join(root, "cli-2");
    expect(await tuneVerb(args(one, "1"))).toBe(0);
    expect(await tuneVerb(args(two, "2"))).toBe(0);
    const [a, b] = await Promise.all([packageFiles(one), packageFiles(two)]);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [file, bytes] of a) expect(b.get(file)!.equals(bytes), file).toBe(true);
    expect((await readManifest(one)).settings).toMatchObject({ batch: 8, microBatch: 4 });
  });

  test("refuses thread counts and micro-batch sizes that are not positive integers, before any work", async () => {
    const out = join(root, "never");
    for (const bad of ["0", "1.5", "x"]) {
      await expect(tuneVerb([...args(out, "1"), `--workers=${bad}`])).rejects.toThrow(`--workers expects a positive integer, got "${bad}"`);
      await expect(tuneVerb([...args(out, "1"), `--micro-batch=${bad}`])).rejects.toThrow(`--micro-batch expects a positive integer, got "${bad}"`);
      await expect(fullFt(["--model", "fixtures/tiny", "--task", "wordnet_antonym", "--out", out, `--workers=${bad}`])).rejects.toThrow(
        `--workers expects a positive integer, got "${bad}"`,
      );
    }
    await expect(readdir(out)).rejects.toThrow();
  });
});
