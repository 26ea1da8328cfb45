// Random checkpoints for the benchmarks (src/train/random_checkpoint.ts): a
// LLaMA one is written as Hugging Face shards with an index, reads back as a
// LLaMA of its shape, and its weights sit where HF keeps them.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { loadBlockWeights, resolveModel } from "../../src/model/load.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { llamaConfigJson, writeRandomLlama, writeRandomTokens } from "../../src/train/random_checkpoint.ts";

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-random-ckpt-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const shape = { layers: 3, hidden: 16, heads: 4, ffn: 44, maxPositions: 32, vocabSize: 40 };

describe("writeRandomLlama", () => {
  it("writes HF shards with an index that read back as a LLaMA of the shape, fp16, HF layout", async () => {
    const dir = join(root, "llama");
    const counts: Array<[number, number]> = [];
    await writeRandomLlama(dir, shape, { maxShardBytes: 4096, onTensor: (done, total) => void counts.push([done, total]) });
    const files = (await readdir(dir)).sort();
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThanOrEqual(2);
    expect(files).toEqual(["config.json", ...shards, "model.safetensors.index.json"].sort());
    const tensors = 3 + 3 * 9; // embed, final norm, head; per block 7 linears and 2 norms
    expect(counts.at(-1)).toEqual([tensors, tensors]);
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    expect(Object.keys(index.weight_map)).toHaveLength(tensors);

    const reader = await openCheckpoint(dir);
    try {
      const { arch, cfg } = resolveModel(reader);
      expect(arch.modelTypes).toContain("llama");
      expect([cfg.layers, cfg.hidden, cfg.heads, cfg.kvHeads, cfg.intermediate, cfg.vocabSize, cfg.tiedHead]).toEqual([3, 16, 4, 4, 44, 40, false]);
      expect(new Set(reader.tensors().map((t) => t.dtype))).toEqual(new Set(["F16"]));
      expect(reader.info("lm_head.weight").shape).toEqual([40, 16]); // nn.Linear [out, in]
      expect(reader.info("model.layers.2.mlp.down_proj.weight").shape).toEqual([16, 44]);
      expect(Array.from(await reader.read("model.layers.1.input_layernorm.weight"))).toEqual(new Array(16).fill(1));
      const gate = await reader.read("model.layers.0.mlp.gate_proj.weight");
      const std = Math.sqrt(gate.reduce((s, v) => s + v * v, 0) / gate.length);
      expect(std).toBeGreaterThan(0.015);
      expect(std).toBeLessThan(0.025);
      const block = await loadBlockWeights(reader, arch, cfg, 2);
      expect(block.get("mlp.gate_proj.weight")!.shape).toEqual([16, 44]); // kernel layout [in, out]
      tf.dispose([...block.values()]);
    } finally {
      await reader.close();
    }
  });

  it("refuses a shape whose heads do not divide the width", () => {
    expect(() => llamaConfigJson({ ...shape, heads: 5 })).toThrow("LLaMA hidden size 16 is not divisible by 5 heads");
  });
});

describe("writeRandomTokens", () => {
  it("writes a Uint16 stream of ids below the vocabulary, the same for every call", async () => {
    const [a, b] = [join(root, "a.bin"), join(root, "b.bin")];
    await writeRandomTokens(a, 300, 1000);
    await writeRandomTokens(b, 300, 1000);
    const bytes = await readFile(a);
    expect(bytes.length).toBe(2000);
    const ids = new Uint16Array(bytes.buffer, bytes.byteOffset, 1000);
    expect(Math.max(...ids)).toBeLessThan(300);
    expect(new Set(ids).size).toBeGreaterThan(250);
    expect(bytes.equals(await readFile(b))).toBe(true);
  });

  it("refuses a vocabulary a Uint16 cannot hold", async () => {
    await expect(writeRandomTokens(join(root, "c.bin"), 70000, 10)).rejects.toThrow("Random tokens need a vocabulary of 1 to 65536 ids (Uint16), got 70000");
  });
});
