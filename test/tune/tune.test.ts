// tuneAdapter on a tiny random OPT and a toy task: the loss falls, only the
// adapter changes, LoRA changes only its factors, and a resumed run equals an
// uninterrupted one bit for bit.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readManifest } from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { withAdapter } from "../../src/model/model_source.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { tuneAdapter, type TuneAdapterOptions } from "../../src/train/tune.ts";
import { TUNE_STATE_FILE } from "../../src/train/tune_package.ts";
import { tempDir, TINY, tinyModel, toyExamples } from "./fixture.ts";

const SPLIT = { bottom: 1, top: 1 };
let root: string;
let modelDir: string;

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await tempDir("adapter");
  modelDir = await tinyModel(join(root, "model"), 3);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Every weight of a map, copied off the tensor heap. */
const arrays = (w: WeightMap) => new Map([...w].map(([name, t]) => [name, t.dataSync().slice() as Float32Array]));

async function allBlocks(handle: ModelHandle): Promise<Array<Map<string, Float32Array>>> {
  const out = [];
  for (let i = 0; i < handle.cfg.layers; i++) {
    const w = await handle.loadBlock(i);
    out.push(arrays(w));
    tf.dispose([...w.values()]);
  }
  return out;
}

/** The tensors of every shard of a package, by `block/name`. */
async function packageTensors(dir: string): Promise<Map<string, Float32Array>> {
  const manifest = await readManifest(dir);
  const out = new Map<string, Float32Array>();
  for (const s of manifest.shards) {
    const { tensors } = await readShardFile(join(dir, s.file), { expectedSha256: s.sha256 });
    for (const t of tensors) out.set(`${s.block}/${t.name}`, t.data);
  }
  return out;
}

const equal = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

async function tune(out: string, options: Partial<TuneAdapterOptions> = {}) {
  const handle = await openModel(modelDir, { split: SPLIT });
  try {
    return await tuneAdapter(handle, {
      examples: toyExamples(24),
      padId: 1,
      out,
      hyper: { epochs: 3, batch: 8, lr: 2e-2, warmup: 1 },
      ...options,
    });
  } finally {
    await handle.close();
  }
}

describe("full adapter tuning", () => {
  let original: Array<Map<string, Float32Array>>;
  let originalOuter: Map<string, Float32Array>;
  const out = () => join(root, "full");

  beforeAll(async () => {
    const handle = await openModel(modelDir, { split: SPLIT });
    original = await allBlocks(handle);
    originalOuter = arrays(handle.outer);
    await handle.close();
  });

  test("the loss falls and no tensor leaks", async () => {
    const before = tf.memory().numTensors;
    const summary = await tune(out());
    expect(tf.memory().numTensors).toBe(before);
    expect(summary.step).toBe(9);
    expect(summary.epochLoss).toHaveLength(3);
    // The toy answers are a function of the context: by the last epoch the tuned model beats
    // the uniform guess (ln 40 ≈ 3.69), which the random model starts far above.
    expect(summary.epochLoss[0]).toBeGreaterThan(Math.log(40));
    expect(summary.epochLoss[2]).toBeLessThan(Math.log(40));
  });

  test("the package holds the adapter blocks only, every weight tuned, and no training state", async () => {
    const manifest = await readManifest(out());
    expect(manifest.kind).toBe("adapter");
    expect(manifest.method).toBe("full");
    expect(manifest.shards.map((s) => [s.block, s.role])).toEqual([[0, "adapter"], [TINY.layers - 1, "adapter"]]);
    expect(await readdir(out())).not.toContain(TUNE_STATE_FILE);
    const tensors = await packageTensors(out());
    for (const block of [0, TINY.layers - 1]) {
      for (const [name, data] of original[block]) {
        const tuned = tensors.get(`${block}/${name}`);
        expect(tuned, `${block}/${name}`).toBeDefined();
        expect(equal(tuned!, data), `${block}/${name} changed`).toBe(false);
      }
    }
    expect(tensors.size).toBe(2 * original[0].size);
  });

  test("plugged into the original, the middle blocks and embeddings are bit-identical", async () => {
    const handle = await withAdapter(await openModel(modelDir, { split: SPLIT }), out());
    try {
      const plugged = await allBlocks(handle);
      for (let i = 1; i < TINY.layers - 1; i++) {
        for (const [name, data] of original[i]) expect(equal(plugged[i].get(name)!, data), `block ${i} ${name}`).toBe(true);
      }
      for (const [name, data] of originalOuter) expect(equal(handle.outer.get(name)!.dataSync() as Float32Array, data)).toBe(true);
      expect(equal(plugged[0].get("fc1.weight")!, original[0].get("fc1.weight")!)).toBe(false);
    } finally {
      await handle.close();
    }
  });
});

describe("tuning the embeddings too", () => {
  test("adds an outer shard that plug-in applies; the middle blocks stay bit-identical", async () => {
    const out = join(root, "embeddings");
    await tune(out, { tuneEmbeddings: true, hyper: { epochs: 1, batch: 8, lr: 1e-2, warmup: 1 } });
    const manifest = await readManifest(out);
    expect(manifest.shards.map((s) => s.block)).toEqual(["outer", 0, 3]);
    const base = await openModel(modelDir, { split: SPLIT });
    const before = await allBlocks(base);
    const outerBefore = arrays(base.outer);
    const plugged = await withAdapter(base, out);
    try {
      const after = await allBlocks(plugged);
      for (const i of [1, 2]) for (const [name, data] of before[i]) expect(equal(after[i].get(name)!, data)).toBe(true);
      const embed = "model.decoder.embed_tokens.weight";
      expect(equal(plugged.outer.get(embed)!.dataSync() as Float32Array, outerBefore.get(embed)!)).toBe(false);
    } finally {
      await plugged.close();
    }
  });
});

describe("LoRA adapter tuning", () => {
  test("changes only the LoRA factors of the adapter blocks' linears", async () => {
    const out = join(root, "lora");
    const summary = await tune(out, { lora: { rank: 2, alpha: 4 }, hyper: { epochs: 2, batch: 8, lr: 2e-2, warmup: 1 } });
    expect(summary.epochLoss[1]).toBeLessThan(summary.epochLoss[0]);
    const manifest = await readManifest(out);
    expect(manifest.method).toBe("lora");
    const tensors = await packageTensors(out);
    const names = [...tensors.keys()];
    expect(names.every((n) => /^(0|3)\/.*\.lora_[ab]$/.test(n))).toBe(true);
    expect(names).toHaveLength(2 * 2 * 6); // 2 blocks × 6 linears × (A, B)
    expect(tensors.get("3/fc2.lora_b")!.some((x) => x !== 0)).toBe(true);

    const base = await openModel(modelDir, { split: SPLIT });
    const originalBlocks = await allBlocks(base);
    const plugged = await withAdapter(base, out);
    try {
      const blocks = await allBlocks(plugged);
      blocks.forEach((block, i) => {
        for (const [name, data] of block) {
          const changes = (i === 0 || i === 3) && /(proj|fc\d)\.weight$/.test(name);
          expect(equal(data, originalBlocks[i].get(name)!), `block ${i} ${name}`).toBe(!changes);
        }
      });
    } finally {
      await plugged.close();
    }
  });
});

describe("resume", () => {
  test("stopping mid-epoch and resuming gives the bit-identical adapter", async () => {
    const hyper = { epochs: 2, batch: 8, lr: 1e-2, warmup: 2 };
    const whole = join(root, "whole");
    const parts = join(root, "parts");
    await tune(whole, { hyper });
    let steps = 0;
    const first = await tune(parts, { hyper, shouldStop: () => ++steps === 4 }); // epoch 2 of 3 steps each, mid-way
    expect(first).toMatchObject({ stopped: true, step: 4 });
    expect(await readdir(parts)).toContain(TUNE_STATE_FILE);

    await expect(tune(parts, { hyper })).rejects.toThrow(/holds an unfinished tuning run/);
    await expect(tune(parts, { hyper: { ...hyper, lr: 2e-2 }, resume: true })).rejects.toThrow(/hyper\.lr: 0\.01 then, 0\.02 now/);

    const second = await tune(parts, { hyper, resume: true });
    expect(second).toMatchObject({ stopped: false, step: 6 });
    const a = await packageTensors(whole);
    const b = await packageTensors(parts);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, data] of a) expect(equal(b.get(name)!, data), name).toBe(true);
    expect(second.epochLoss).toEqual((await tune(join(root, "again"), { hyper })).epochLoss);
    await expect(tune(parts, { hyper, resume: true })).rejects.toThrow(/holds a finished adapter/);
  });
});
