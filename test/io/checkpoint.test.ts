import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint, saveCheckpoint, type TensorToSave } from "../../src/io/checkpoint.ts";
import { CheckpointError } from "../../src/io/errors.ts";
import { caught } from "./errors.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-ckpt-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
const fresh = (label: string) => join(root, `${label}-${counter++}`);

/** Deterministic values spanning several binades, signs and a zero. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(seed * 97 + i * 1.7) * 10 ** ((i % 7) - 3);
  out[0] = 0;
  return out;
}

const config = { model_type: "opt", hidden_size: 8, num_hidden_layers: 2 };

function tensorsFor(): TensorToSave[] {
  return [
    { name: "decoder.embed_tokens.weight", shape: [5, 8], data: values(40, 1) },
    { name: "decoder.layers.0.fc1.weight", shape: [16, 8], data: values(128, 2) },
    { name: "decoder.layers.0.fc1.bias", shape: [16], data: values(16, 3) },
    { name: "decoder.final_layer_norm.weight", shape: [8], data: values(8, 4) },
  ];
}

/** Largest |a - b| / max(|b|, tiny) over elements: the relative rounding error. */
function maxRelError(a: Float32Array, b: Float32Array, tiny: number): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), tiny));
  return worst;
}

describe("saveCheckpoint then openCheckpoint", () => {
  it("round-trips F32 exactly, with config, shapes, dtype and file", async () => {
    const dir = fresh("f32");
    const src = tensorsFor();
    await saveCheckpoint(dir, config, src);
    expect((await readdir(dir)).sort()).toEqual(["config.json", "model.safetensors"]);
    const ckpt = await openCheckpoint(dir);
    try {
      expect(ckpt.config).toEqual(config);
      expect(ckpt.tensors()).toEqual(src.map((t) => ({
        name: t.name,
        dtype: "F32",
        shape: t.shape,
        file: join(dir, "model.safetensors"),
      })));
      for (const t of src) expect(await ckpt.read(t.name)).toEqual(t.data);
    } finally {
      await ckpt.close();
    }
  });

  // Round to nearest: relative error at most 2^-11 (F16, 10-bit mantissa) and
  // 2^-8 (BF16, 7-bit mantissa) for normal numbers; F16 subnormals (< 2^-14)
  // have absolute error at most 2^-25.
  for (const [dtype, rel, tiny] of [["F16", 2 ** -11, 2 ** -14], ["BF16", 2 ** -8, 1e-30]] as const) {
    it(`round-trips ${dtype} within its rounding error`, async () => {
      const dir = fresh(dtype);
      const src = tensorsFor();
      await saveCheckpoint(dir, config, src, { dtype });
      const ckpt = await openCheckpoint(dir);
      let sawRounding = false;
      for (const t of src) {
        expect(ckpt.info(t.name).dtype).toBe(dtype);
        const back = await ckpt.read(t.name);
        expect(back.length).toBe(t.data.length);
        expect(maxRelError(back, t.data, tiny)).toBeLessThanOrEqual(rel * 1.0001);
        if (back.some((x, i) => x !== t.data[i])) sawRounding = true;
      }
      expect(sawRounding).toBe(true); // the data really was stored at reduced precision
      await ckpt.close();
    });
  }

  it("shards past maxShardBytes with an HF index, and reopens from an async iterable", async () => {
    const dir = fresh("sharded");
    const src = tensorsFor(); // 160, 512, 64, 32 bytes in F32
    async function* stream() {
      for (const t of src) yield t;
    }
    await saveCheckpoint(dir, config, stream(), { maxShardBytes: 600 });
    const files = (await readdir(dir)).sort();
    const shards = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
    expect(files).toEqual(["config.json", ...shards, "model.safetensors.index.json"].sort());
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8"));
    // 160 alone (160+512 > 600), then 512 + 64 = 576, then 32 (576 + 32 > 600).
    expect(index).toEqual({
      metadata: { total_size: 768 },
      weight_map: {
        "decoder.embed_tokens.weight": shards[0],
        "decoder.layers.0.fc1.weight": shards[1],
        "decoder.layers.0.fc1.bias": shards[1],
        "decoder.final_layer_norm.weight": shards[2],
      },
    });
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.tensors().map((t) => [t.name, t.file])).toEqual(
      src.map((t) => [t.name, join(dir, index.weight_map[t.name])]),
    );
    for (const t of src) expect(await ckpt.read(t.name)).toEqual(t.data);
    await ckpt.close();
  });

  it("writes the published layout: aligned header, metadata, offsets and raw bits", async () => {
    const dir = fresh("layout");
    const data = new Float32Array([1, -2, 65504, 1 / 3]);
    await saveCheckpoint(dir, config, [{ name: "h", shape: [2, 2], data }, { name: "s", shape: [], data: new Float32Array([0.5]) }], {
      dtype: "F16",
      metadata: { source: "unit" },
    });
    const bytes = await readFile(join(dir, "model.safetensors"));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = Number(view.getBigUint64(0, true));
    expect(n % 8).toBe(0); // data region 8-byte aligned, as the reference writer pads
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
    expect(header).toEqual({
      __metadata__: { format: "pt", source: "unit" },
      h: { dtype: "F16", shape: [2, 2], data_offsets: [0, 8] },
      s: { dtype: "F16", shape: [], data_offsets: [8, 10] },
    });
    expect(bytes.length).toBe(8 + n + 10);
    // IEEE half bits: 1 = 0x3c00, -2 = 0xc000, 65504 = 0x7bff, 1/3 -> 0x3555, 0.5 = 0x3800
    const bits = [0, 1, 2, 3, 4].map((i) => view.getUint16(8 + n + 2 * i, true));
    expect(bits).toEqual([0x3c00, 0xc000, 0x7bff, 0x3555, 0x3800]);
  });

  it("replaces stale weight files in an existing directory and keeps other files", async () => {
    const dir = fresh("existing");
    await saveCheckpoint(dir, config, tensorsFor(), { maxShardBytes: 600 });
    await writeFile(join(dir, "tokenizer.json"), "{}");
    const one = [{ name: "only", shape: [2], data: new Float32Array([3, 4]) }];
    await saveCheckpoint(dir, { ...config, hidden_size: 2 }, one);
    expect((await readdir(dir)).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.config.hidden_size).toBe(2);
    expect([...await ckpt.read("only")]).toEqual([3, 4]);
    await ckpt.close();
    expect((await readdir(root)).filter((f) => /\.(tmp|old)-/.test(f))).toEqual([]);
  });

  it("leaves nothing behind when the tensor stream fails midway", async () => {
    const dir = fresh("failing");
    function* broken() {
      yield tensorsFor()[0];
      yield tensorsFor()[1]; // flushes the first shard to the temp directory
      throw new Error("source died");
    }
    await expect(saveCheckpoint(dir, config, broken(), { maxShardBytes: 100 })).rejects.toThrow("source died");
    const left = await readdir(root);
    expect(left.filter((f) => f.includes("failing"))).toEqual([]);
  });

  it("rejects data that disagrees with its shape and repeated names", async () => {
    await expect(saveCheckpoint(fresh("bad"), config, [{ name: "x", shape: [2, 2], data: new Float32Array(3) }]))
      .rejects.toThrow(/shape \[2, 2\] needs 4 values, got 3/);
    const twice = [tensorsFor()[2], tensorsFor()[2]];
    await expect(saveCheckpoint(fresh("bad"), config, twice)).rejects.toThrow(/appears twice/);
  });
});

describe("openCheckpoint errors", () => {
  it("names a missing directory, config.json and weights file", async () => {
    const missing = fresh("missing");
    expect((await caught(openCheckpoint(missing))).message).toBe(
      `Cannot open checkpoint "${missing}": directory does not exist`,
    );
    const dir = fresh("noconfig");
    await mkdir(dir);
    const noConfig = await caught(openCheckpoint(dir));
    expect(noConfig.file).toBe(join(dir, "config.json"));
    expect(noConfig.message).toContain(join(dir, "config.json"));
    await writeFile(join(dir, "config.json"), "{");
    expect((await caught(openCheckpoint(dir))).message).toMatch(/config\.json": invalid JSON/);
    await writeFile(join(dir, "config.json"), "{}");
    const noWeights = await caught(openCheckpoint(dir));
    expect(noWeights.message).toContain(join(dir, "model.safetensors"));
    expect(noWeights.message).toContain(join(dir, "model.safetensors.index.json"));
  });

  it("names the tensor, file and first bad index of a NaN or Inf, unless disabled", async () => {
    const dir = fresh("nan");
    const data = new Float32Array([1, 2, 3, Infinity, NaN]);
    await saveCheckpoint(dir, config, [{ name: "bad", shape: [5], data }, { name: "good", shape: [1], data: new Float32Array([1]) }]);
    const ckpt = await openCheckpoint(dir);
    const err = await caught(ckpt.read("bad"));
    expect(err.message).toBe(
      `Tensor "bad" in "${join(dir, "model.safetensors")}" holds Infinity at flat index 3 (first non-finite value)`,
    );
    expect([...await ckpt.read("good")]).toEqual([1]);
    await ckpt.close();
    const lax = await openCheckpoint(dir, { scanNonFinite: false });
    expect([...await lax.read("bad")]).toEqual([1, 2, 3, Infinity, NaN]);
    await lax.close();
  });

  it("reads row ranges synchronously (F16 and F32), scanned with the flat index of the whole tensor", async () => {
    const dir = fresh("rows");
    const table = Float32Array.from({ length: 6 * 3 }, (_, i) => i / 4); // [6, 3], exact in F16
    const bad = Float32Array.from({ length: 4 * 2 }, (_, i) => (i === 5 ? NaN : i)); // row 2 holds NaN
    for (const dtype of ["F16", "F32", "BF16"] as const) {
      await saveCheckpoint(dir, config, [{ name: "table", shape: [6, 3], data: table }, { name: "bad", shape: [4, 2], data: bad }], { dtype });
      const ckpt = await openCheckpoint(dir);
      expect(ckpt.readRowsSync("table", 2, 3)).toEqual(table.slice(6, 15));
      // Into a caller's buffer (reused, larger than the rows): a view of exactly the rows, in its front.
      const buffer = new Float32Array(12).fill(-1);
      const first = ckpt.readRowsSync("table", 0, 3, buffer);
      expect(first.buffer).toBe(buffer.buffer);
      expect(first).toEqual(table.slice(0, 9));
      expect(ckpt.readRowsSync("table", 3, 2, buffer)).toEqual(table.slice(9, 15));
      expect(buffer[11]).toBe(-1);
      expect(() => ckpt.readRowsSync("table", 0, 5, buffer)).toThrow('Cannot read 5 rows of tensor "table" into 12 values');
      expect(ckpt.readRowsSync("table", 5, 1)).toEqual(table.slice(15, 18));
      expect(ckpt.readRowsSync("bad", 0, 2)).toEqual(bad.slice(0, 4));
      expect(() => ckpt.readRowsSync("bad", 1, 2)).toThrow(
        `Tensor "bad" in "${join(dir, "model.safetensors")}" holds NaN at flat index 5 (first non-finite value)`,
      );
      expect(() => ckpt.readRowsSync("table", 4, 3)).toThrow(/rows \[4, 7\) of tensor "table" .* it has 6 rows/);
      await ckpt.close();
    }
  });

  it("names the weights file when a tensor is absent", async () => {
    const dir = fresh("absent");
    await saveCheckpoint(dir, config, tensorsFor());
    const ckpt = await openCheckpoint(dir);
    const err = await caught(ckpt.read("decoder.layers.9.fc1.weight"));
    expect(err.message).toBe(
      `Cannot find tensor "decoder.layers.9.fc1.weight" in checkpoint "${join(dir, "model.safetensors")}"`,
    );
    expect(() => ckpt.info("nope")).toThrow(CheckpointError);
    await ckpt.close();
  });

  it("rejects an index that disagrees with its shards", async () => {
    const dir = fresh("badindex");
    await saveCheckpoint(dir, config, tensorsFor(), { maxShardBytes: 600 });
    const indexPath = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    index.weight_map["ghost.weight"] = "model-00001-of-00003.safetensors";
    await writeFile(indexPath, JSON.stringify(index));
    expect((await caught(openCheckpoint(dir))).message).toMatch(
      /tensor "ghost.weight" is mapped to "model-00001-of-00003.safetensors", which does not contain it/,
    );
    delete index.weight_map["ghost.weight"];
    index.weight_map["decoder.layers.0.fc1.bias"] = "model-00003-of-00003.safetensors";
    await writeFile(indexPath, JSON.stringify(index));
    expect((await caught(openCheckpoint(dir))).message).toMatch(
      /"decoder.layers.0.fc1.bias" is stored in "model-00002-of-00003.safetensors" but the index maps it to "model-00003/,
    );
    index.weight_map["decoder.layers.0.fc1.bias"] = "../elsewhere.safetensors";
    await writeFile(indexPath, JSON.stringify(index));
    expect((await caught(openCheckpoint(dir))).message).toMatch(/maps to "..\/elsewhere.safetensors", not a file name/);
  });

  it("rejects a stored dtype other than F32, F16, BF16", async () => {
    const dir = fresh("int");
    await mkdir(dir);
    await writeFile(join(dir, "config.json"), "{}");
    const json = new TextEncoder().encode(JSON.stringify({ ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }));
    const bytes = new Uint8Array(8 + json.length + 8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
    bytes.set(json, 8);
    await writeFile(join(dir, "model.safetensors"), bytes);
    expect((await caught(openCheckpoint(dir))).message).toMatch(
      /tensor "ids" has dtype I64; offtune reads F32, F16 and BF16/,
    );
  });
});
