/**
 * Loading HF checkpoints into kernel layout and saving them back: shape and
 * name errors, and an exact save/load round trip of the golden fixtures.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CheckpointReader, openCheckpoint, saveCheckpoint, type TensorToSave } from "../../src/io/checkpoint.ts";
import { CheckpointError } from "../../src/io/errors.ts";
import { loadBlockWeights, loadOuterWeights, resolveModel, toHfTensors } from "../../src/model/load.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";
import { fixtureDir } from "./golden.ts";
import { openModel } from "../../src/model/model_handle.ts";

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-model-load-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** All tensors of a checkpoint, passed through `edit` (return undefined to drop one). */
async function copyTensors(
  reader: CheckpointReader,
  edit: (t: TensorToSave) => TensorToSave | undefined = (t) => t,
): Promise<TensorToSave[]> {
  const out: TensorToSave[] = [];
  for (const info of reader.tensors()) {
    const t = edit({ name: info.name, shape: info.shape, data: await reader.read(info.name) });
    if (t) out.push(t);
  }
  return out;
}

async function withCheckpoint<T>(dir: string, body: (reader: CheckpointReader) => Promise<T>): Promise<T> {
  const reader = await openCheckpoint(dir);
  try {
    return await body(reader);
  } finally {
    await reader.close();
  }
}

async function editedFixture(label: string, edit: (t: TensorToSave) => TensorToSave | undefined): Promise<string> {
  const dir = join(root, label);
  await withCheckpoint(fixtureDir("opt_post_ln"), async (src) => {
    await saveCheckpoint(dir, src.config, await copyTensors(src, edit));
  });
  return dir;
}

describe("loadBlockWeights", () => {
  it("rejects a tensor of the wrong shape, naming the file, the tensor and both shapes", async () => {
    const bad = "model.decoder.layers.1.fc1.weight"; // HF [out, in] = [64, 32]
    const dir = await editedFixture("wrong-shape", (t) => (t.name === bad ? { ...t, shape: [32, 64] } : t));
    await withCheckpoint(dir, async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      const before = tf.memory().numTensors;
      const block0 = await loadBlockWeights(reader, arch, cfg, 0);
      tf.dispose([...block0.values()]);
      const error = await loadBlockWeights(reader, arch, cfg, 1).catch((e) => e);
      expect(error).toBeInstanceOf(CheckpointError);
      expect(error.file).toBe(join(dir, "model.safetensors"));
      expect(error.message).toBe(
        `Cannot load "${bad}" from "${join(dir, "model.safetensors")}": ` +
          "config.json implies shape [64, 32] ([out, in]), the file has [32, 64]",
      );
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  it("names a missing tensor and the checkpoint", async () => {
    const gone = "model.decoder.layers.0.self_attn.k_proj.bias";
    const dir = await editedFixture("missing", (t) => (t.name === gone ? undefined : t));
    await withCheckpoint(dir, async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      await expect(loadBlockWeights(reader, arch, cfg, 0)).rejects.toThrow(
        `Cannot load block 0 from "${dir}": tensor "${gone}" is missing`,
      );
      await expect(loadBlockWeights(reader, arch, cfg, 2)).rejects.toThrow("Block index 2 is outside 0..1");
    });
  });

  it("transposes nn.Linear weights into kernel layout [in, out]", async () => {
    await withCheckpoint(fixtureDir("opt_post_ln"), async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      const block = await loadBlockWeights(reader, arch, cfg, 0);
      const hf = await reader.read("model.decoder.layers.0.fc1.weight"); // [64, 32]
      const kernel = block.get("fc1.weight")!;
      expect(kernel.shape).toEqual([32, 64]);
      const k = kernel.dataSync();
      expect(k[5 * 64 + 7]).toBe(hf[7 * 32 + 5]);
      const bias = block.get("fc1.bias")!.dataSync();
      expect(Array.from(bias)).toEqual(Array.from(await reader.read("model.decoder.layers.0.fc1.bias")));
      tf.dispose([...block.values()]);
    });
  });
});

describe("loadBlockWeights row block by row block", () => {
  // ffn 9000: fc1 [9000, 8] is read in two row blocks (8192 + 808 rows), fc2 [8, 9000] in blocks of 7 rows.
  const shape = { layers: 1, hidden: 8, heads: 2, ffn: 9000, maxPositions: 16, vocabSize: 32, bosId: 2, eosId: 2, padId: 1 };

  it("transposes every weight exactly across row blocks", async () => {
    const dir = join(root, "wide");
    await writeRandomOpt(dir, shape, { dtype: "F32" });
    await withCheckpoint(dir, async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      const block = await loadBlockWeights(reader, arch, cfg, 0);
      for (const [name, [out, inF]] of [["fc1", [9000, 8]], ["fc2", [8, 9000]], ["self_attn.q_proj", [8, 8]]] as const) {
        const hf = await reader.read(`model.decoder.layers.0.${name}.weight`); // [out, in]
        const kernel = block.get(`${name}.weight`)!.dataSync(); // [in, out]
        const expected = new Float32Array(hf.length);
        for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) expected[i * out + o] = hf[o * inF + i];
        expect(kernel).toEqual(expected);
      }
      expect(block.get("fc1.bias")!.dataSync()).toEqual(await reader.read("model.decoder.layers.0.fc1.bias"));
      tf.dispose([...block.values()]);
    });
  });

  it("names the file and flat index of a NaN in a later row block, and leaves nothing allocated", async () => {
    const dir = join(root, "wide-nan");
    await writeRandomOpt(dir, shape, { dtype: "F32" });
    const src = await openCheckpoint(dir, { scanNonFinite: false });
    const tensors = await copyTensors(src, (t) => {
      if (t.name !== "model.decoder.layers.0.fc2.weight") return t;
      const data = t.data.slice();
      data[7 * 9000 + 3] = NaN; // row 7: the second row block
      return { ...t, data };
    });
    await saveCheckpoint(dir, src.config, tensors, { dtype: "F32" });
    await src.close();
    await withCheckpoint(dir, async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      const before = [tf.memory().numTensors, tf.backend().numDataIds()];
      const error = await loadBlockWeights(reader, arch, cfg, 0).catch((e) => e);
      expect(error).toBeInstanceOf(CheckpointError);
      expect(error.message).toBe(
        `Tensor "model.decoder.layers.0.fc2.weight" in "${join(dir, "model.safetensors")}" holds NaN at flat index ${7 * 9000 + 3} (first non-finite value)`,
      );
      expect([tf.memory().numTensors, tf.backend().numDataIds()]).toEqual(before);
    });
  });
});

describe("toHfTensors", () => {
  for (const name of ["opt", "gpt2", "llama"]) {
    it(`${name}: load -> toHfTensors -> save -> read gives every tensor back exactly`, async () => {
      const dir = join(root, `roundtrip-${name}`);
      const before = tf.memory().numTensors;
      const original = new Map<string, Float32Array>();
      await withCheckpoint(fixtureDir(name), async (reader) => {
        const { arch, cfg } = resolveModel(reader);
        const saved: TensorToSave[] = [];
        const outer = await loadOuterWeights(reader, arch, cfg);
        saved.push(...toHfTensors(arch, cfg, "outer", outer));
        tf.dispose([...outer.values()]);
        for (let i = 0; i < cfg.layers; i++) {
          const block = await loadBlockWeights(reader, arch, cfg, i);
          saved.push(...toHfTensors(arch, cfg, i, block));
          tf.dispose([...block.values()]);
        }
        await saveCheckpoint(dir, reader.config, saved);
        for (const t of saved) {
          // GPT-2's fixture omits the `transformer.` prefix that saving adds.
          const stored = reader.tensors().some((i) => i.name === t.name) ? t.name : t.name.replace(/^transformer\./, "");
          original.set(t.name, await reader.read(stored));
        }
      });
      await withCheckpoint(dir, async (copy) => {
        expect(copy.tensors().map((t) => t.name).sort()).toEqual([...original.keys()].sort());
        for (const [tensorName, data] of original) expect(await copy.read(tensorName)).toEqual(data);
        const { arch, cfg } = resolveModel(copy);
        const block = await loadBlockWeights(copy, arch, cfg, 0);
        tf.dispose([...block.values()]);
      });
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("refuses DRD factors and weights whose shape config.json does not imply", async () => {
    await withCheckpoint(fixtureDir("opt_post_ln"), async (reader) => {
      const { arch, cfg } = resolveModel(reader);
      const block = await loadBlockWeights(reader, arch, cfg, 0);
      const factored = new Map(block);
      factored.delete("fc1.weight");
      const u = tf.zeros([32, 4]);
      const v = tf.zeros([4, 64]);
      factored.set("fc1.weight_u", u).set("fc1.weight_v", v);
      expect(() => toHfTensors(arch, cfg, 0, factored)).toThrow(
        'Cannot save block 0 in Hugging Face layout: unexpected weight "fc1.weight_u"',
      );
      const pruned = new Map(block);
      const narrow = tf.zeros([32, 48]);
      pruned.set("fc1.weight", narrow);
      expect(() => toHfTensors(arch, cfg, 0, pruned)).toThrow(
        'weight "fc1.weight" has shape [32, 48], config.json implies [32, 64]',
      );
      tf.dispose([u, v, narrow, ...block.values()]);
    });
  });
});

describe("openModel's source hash", () => {
  it("is the SHA-256 of config.json and the weight files, or the one the caller knows already", async () => {
    const dir = fixtureDir("opt_post_ln");
    const split = { bottom: 0, top: 0 }; // the fixture has 2 blocks
    const hashed = await openModel(dir, { split });
    const told = await openModel(dir, { split, sourceHash: "a".repeat(64) });
    try {
      const { createHash } = await import("node:crypto");
      const { readFile, readdir } = await import("node:fs/promises");
      const weights = (await readdir(dir)).filter((f) => f.endsWith(".safetensors")).sort();
      const hash = createHash("sha256");
      for (const file of ["config.json", ...weights]) hash.update(await readFile(join(dir, file)));
      expect(hashed.sourceHash).toBe(hash.digest("hex"));
      expect(told.sourceHash).toBe("a".repeat(64));
    } finally {
      await hashed.close();
      await told.close();
    }
  });
});
