// The verbs end to end on a tiny OPT with the project's tokenizer (vocab
// 6,016): build-emulator → tune → plug-in, full-ft, and plug-in's refusals.
import { copyFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as fullFt } from "../../pipelines/full_ft.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import { forwardLogits } from "../../src/model/forward.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import type { AdapterSplit, ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import type { LoraOptions } from "../../src/train/lora.ts";
import { writeAdapterPackage } from "../../src/train/tune_package.ts";
import { trainableSet } from "../../src/train/tune_params.ts";
import { tempDir, TINY, tinyModel } from "./fixture.ts";

const VOCAB = 6016;
let root: string;
let modelDir: string;
let otherDir: string;

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await tempDir("cli");
  modelDir = await tinyModel(join(root, "model"), 1, { vocabSize: VOCAB, maxPositions: 48 });
  otherDir = await tinyModel(join(root, "other"), 2, { vocabSize: VOCAB, maxPositions: 48 });
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) {
    await copyFile(join("fixtures/tokenizer", file), join(modelDir, file));
  }
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function blocksOf(handle: ModelHandle): Promise<WeightMap[]> {
  const blocks: WeightMap[] = [];
  for (let i = 0; i < handle.cfg.layers; i++) blocks.push(await handle.loadBlock(i));
  return blocks;
}

/** Logits of a fixed token batch through the checkpoint in `dir`. */
async function logitsOf(dir: string): Promise<Float32Array> {
  const handle = await openModel(dir, { split: { bottom: 0, top: 0 } });
  const blocks = await blocksOf(handle);
  try {
    return tf.tidy(() => {
      const ids = tf.tensor2d(Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 613) % VOCAB), [2, 12], "int32");
      return forwardLogits(handle.arch, handle.cfg, handle.outer, blocks, ids).dataSync() as Float32Array;
    });
  } finally {
    for (const b of blocks) tf.dispose([...b.values()]);
    await handle.close();
  }
}

/** Writes the untrained (zero-step) adapter of `dir` under `split` to `out`. */
async function zeroStepAdapter(dir: string, split: AdapterSplit, out: string, lora?: LoraOptions): Promise<void> {
  const handle = await openModel(dir, { split });
  const blocks = await blocksOf(handle);
  try {
    const adapterBlocks = [...Array(split.bottom).keys(), ...Array.from({ length: split.top }, (_, k) => TINY.layers - 1 - k)];
    const trainable = trainableSet({ arch: handle.arch, cfg: handle.cfg, outer: handle.outer, blocks }, {
      blocks: adapterBlocks,
      lora,
      embeddings: false,
    });
    await writeAdapterPackage(out, {
      model: handle,
      parts: trainable.adapterArrays(trainable.initial(5)),
      method: lora ? "lora" : "full",
      settings: {},
      extra: {},
    });
  } finally {
    for (const b of blocks) tf.dispose([...b.values()]);
    await handle.close();
  }
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

describe("plug-in", () => {
  test("a zero-step adapter (full or LoRA) plugged in reproduces the original logits exactly", async () => {
    const original = await logitsOf(modelDir);
    for (const lora of [undefined, { rank: 2, alpha: 4 }]) {
      const adapter = join(root, lora ? "zero-lora" : "zero-full");
      const out = join(root, lora ? "plugged-zero-lora" : "plugged-zero-full");
      await zeroStepAdapter(modelDir, { bottom: 1, top: 1 }, adapter, lora);
      expect(await plugIn(["--model", modelDir, "--adapter", adapter, "--out", out, "--split", "1,1", "--quiet"])).toBe(0);
      expect((await readdir(out)).sort()).toEqual([
        "config.json", "model.safetensors", "offtune_output.json", "tokenizer.json", "tokenizer_config.json",
      ]);
      expect(same(await logitsOf(out), original)).toBe(true);
    }
  });

  test("refuses an adapter tuned for another model, or for another split", async () => {
    const foreign = join(root, "foreign");
    await zeroStepAdapter(otherDir, { bottom: 1, top: 1 }, foreign);
    const out = join(root, "refused");
    await expect(plugIn(["--model", modelDir, "--adapter", foreign, "--out", out, "--split", "1,1", "--quiet"]))
      .rejects.toThrow(/was tuned for model [0-9a-f]{12}…, but ".*model" is [0-9a-f]{12}…/);
    await expect(plugIn(["--model", modelDir, "--adapter", join(root, "zero-full"), "--out", out, "--split", "2,1", "--quiet"]))
      .rejects.toThrow(/has split 1\+1, the model 2\+1/);
    await expect(readdir(out)).rejects.toThrow(/ENOENT/);
  });
});

describe("tune through a GradOT emulator, then plug in", () => {
  test("the adapter tuned on the emulator plugs into the original: adapter blocks tuned, middle untouched", async () => {
    const calibration = join(root, "calibration.bin");
    await writeFile(calibration, new Uint8Array(Uint16Array.from({ length: 4 * 16 + 1 }, (_, i) => (i * 37) % VOCAB).buffer));
    const emulator = join(root, "emulator");
    expect(await buildEmulator([
      "--model", modelDir, "--calibration", calibration, "--out", emulator,
      "--sequences", "4", "--length", "16", "--split", "1,1", "--quiet",
    ])).toBe(0);
    const items = join(root, "items.jsonl");
    const lines = (await readFile("fixtures/data/tasks/wordnet_antonym/train.jsonl", "utf8")).split("\n");
    await writeFile(items, lines.slice(0, 6).join("\n") + "\n");

    const adapter = join(root, "adapter");
    expect(await tuneVerb([
      "--emulator", emulator, "--task", items, "--out", adapter,
      "--epochs", "2", "--batch", "3", "--lr", "1e-2", "--quiet",
    ])).toBe(0);
    const manifest = await readManifest(adapter);
    expect(manifest.extra).toMatchObject({ task: expect.stringMatching(/\/items$/), examples: 6, step: 4, finished: true, tunedOn: emulator });
    expect(manifest.shards.map((s) => s.block)).toEqual([0, 3]);

    const plugged = join(root, "plugged");
    expect(await plugIn(["--model", modelDir, "--adapter", adapter, "--out", plugged, "--split", "1,1", "--quiet"])).toBe(0);
    const base = await openModel(modelDir, { split: { bottom: 1, top: 1 } });
    const result = await openModel(plugged, { split: { bottom: 1, top: 1 } });
    try {
      const { tensors } = await readShardFile(join(adapter, manifest.shards[1].file));
      const tunedFc1 = tensors.find((t) => t.name === "fc1.weight")!.data;
      const [before, after] = [await blocksOf(base), await blocksOf(result)];
      expect(same(after[3].get("fc1.weight")!.dataSync() as Float32Array, tunedFc1)).toBe(true);
      expect(same(after[3].get("fc1.weight")!.dataSync() as Float32Array, before[3].get("fc1.weight")!.dataSync() as Float32Array)).toBe(false);
      for (const i of [1, 2]) {
        for (const [name, t] of before[i]) expect(same(after[i].get(name)!.dataSync() as Float32Array, t.dataSync() as Float32Array)).toBe(true);
      }
      tf.dispose([...before, ...after].flatMap((b) => [...b.values()]));
    } finally {
      await base.close();
      await result.close();
    }
  });
});

describe("full-ft", () => {
  test("tunes every block (embeddings frozen) and writes a loadable Hugging Face checkpoint", async () => {
    const out = join(root, "full-ft", "seed0", "wordnet_antonym"); // parents that do not exist yet, as experiment's
    expect(await fullFt([
      "--model", modelDir, "--task", "wordnet_antonym", "--limit", "6", "--out", out,
      "--epochs", "2", "--batch", "3", "--lr", "1e-2", "--quiet", // 2 epochs: a state is saved between them
    ])).toBe(0);
    expect(await readdir(out)).toContain("tokenizer.json");
    const base = await openModel(modelDir, { split: { bottom: 0, top: 0 } });
    const tuned = await openModel(out, { split: { bottom: 0, top: 0 } });
    try {
      for (const [name, t] of base.outer) expect(same(tuned.outer.get(name)!.dataSync() as Float32Array, t.dataSync() as Float32Array)).toBe(true);
      const [before, after] = [await blocksOf(base), await blocksOf(tuned)];
      for (let i = 0; i < TINY.layers; i++) {
        expect(same(after[i].get("fc2.weight")!.dataSync() as Float32Array, before[i].get("fc2.weight")!.dataSync() as Float32Array)).toBe(false);
      }
      tf.dispose([...before, ...after].flatMap((b) => [...b.values()]));
    } finally {
      await base.close();
      await tuned.close();
    }
  });

  test("flags are checked before any work", async () => {
    await expect(fullFt(["--model", modelDir, "--task", "wordnet_antonym"])).rejects.toThrow(/--out <dir>|--out is required/);
    await expect(tuneVerb(["--emulator", modelDir, "--task", "x", "--out", join(root, "x"), "--lora-rank", "4"]))
      .rejects.toThrow(/--lora-rank and --lora-alpha need --lora/);
    await expect(tuneVerb(["--emulator", modelDir, "--task", "no_such_task", "--out", join(root, "x"), "--quiet"]))
      .rejects.toThrow(/Cannot read task "no_such_task" split "train"/);
  });
});
