import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeShard, readShardFile } from "../../src/io/shard_reader.ts";
import { firstNonFinite, type ShardMeta, type ShardTensor, type ShardTensorInput } from "../../src/io/shard_schema.ts";
import { encodeShard, writeShardFile } from "../../src/io/shard_writer.ts";
import { fileError } from "./errors.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-shard-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Deterministic values spanning several binades and both signs, with a zero. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(seed * 97 + i * 1.7) * 10 ** ((i % 5) - 3);
  if (n > 0) out[0] = 0;
  return out;
}

const meta: ShardMeta = {
  block: 3,
  role: "middle",
  method: "gradot-drd",
  settings: { rank: 4, lambda: { attn: 0.5, mlp: 1 }, components: ["q_proj", "k_proj"], note: "säge ✓", none: null },
  sourceHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  configHash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
};

function blockTensors(): ShardTensor[] {
  return [
    { name: "self_attn.q_proj.weight_u", shape: [8, 4], data: values(32, 1) },
    { name: "self_attn.q_proj.weight_v", shape: [4, 8], data: values(32, 2) },
    { name: "self_attn.q_proj.bias", shape: [8], data: values(8, 3) },
    { name: "fc1.weight", shape: [8, 2, 3], data: values(48, 4) },
  ];
}

/**
 * Independent reference for float16 storage: round `x` to the nearest
 * binary16 value, ties to even, from the format's definition (10 fraction
 * bits; exponent floor -14, below which the spacing stays 2^-24).
 */
function roundToHalf(x: number): number {
  if (x === 0) return 0;
  const exponent = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const ulp = 2 ** (exponent - 10);
  const q = x / ulp;
  const f = Math.floor(q);
  const frac = q - f;
  const n = frac > 0.5 ? f + 1 : frac < 0.5 ? f : f % 2 === 0 ? f : f + 1;
  return n * ulp;
}

/** Index of the first element where `a` and `b` differ (or -1), without a slow deep-equal on large arrays. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe("encodeShard then decodeShard", () => {
  it("round-trips float32 tensors exactly, in order, with all metadata", () => {
    const src = blockTensors();
    const out = decodeShard(encodeShard(meta, src), "mem");
    expect(out.meta).toEqual(meta);
    expect(out.tensors.map((t) => t.name)).toEqual(src.map((t) => t.name));
    out.tensors.forEach((t, i) => {
      expect(t.shape).toEqual(src[i].shape);
      expect(t.data).toBeInstanceOf(Float32Array);
      expect(Array.from(t.data)).toEqual(Array.from(src[i].data));
    });
  });

  it("stores float16 as the nearest binary16 value (ties to even), matching an independent rounding", () => {
    const data = values(400, 7).map((v, i) => v * 3 ** (i % 9));
    // Exact ties: 1 + 2^-11 lies midway between 1 and 1 + 2^-10 and must go to the even one (1);
    // 1 + 3·2^-11 must go up to 1 + 2^-9. A subnormal and the largest finite half close the list.
    const special = [1 + 2 ** -11, 1 + 3 * 2 ** -11, -(2 ** -20), 65504, -65504];
    data.set(special, 0);
    const out = decodeShard(encodeShard(meta, [{ name: "w", shape: [20, 20], data }], { dtype: "float16" }), "mem");
    const expected = Array.from(data, roundToHalf);
    expect(Array.from(out.tensors[0].data)).toEqual(expected);
    expect(expected.slice(0, 5)).toEqual([1, 1 + 2 ** -9, -(2 ** -20), 65504, -65504]);
    let worst = 0;
    data.forEach((v, i) => {
      if (Math.abs(v) >= 2 ** -14) worst = Math.max(worst, Math.abs(out.tensors[0].data[i] - v) / Math.abs(v));
    });
    console.log(`float16 round trip: max relative error ${worst.toExponential(3)} (bound 2^-11 = 4.883e-4)`);
    expect(worst).toBeLessThanOrEqual(2 ** -11);
  });

  it("round-trips float16 values that binary16 represents without any change", () => {
    const data = Float32Array.from({ length: 4097 }, (_, i) => (i - 2048) / 1024);
    const out = decodeShard(encodeShard(meta, [{ name: "grid", shape: [4097], data }], { dtype: "float16" }), "m");
    expect(Array.from(out.tensors[0].data)).toEqual(Array.from(data));
  });

  it("halves the data bytes with float16", () => {
    const t = [{ name: "w", shape: [256, 128], data: values(256 * 128, 5) }];
    const f32 = encodeShard(meta, t).byteLength;
    const f16 = encodeShard(meta, t, { dtype: "float16" }).byteLength;
    expect(f32 - f16).toBeGreaterThanOrEqual(256 * 128 * 2);
    expect(f32 - f16).toBeLessThan(256 * 128 * 2 + 64);
  });

  it("round-trips a large-ish tensor (512 x 1024) and twenty columns", () => {
    const big = values(512 * 1024, 9);
    const many = Array.from({ length: 20 }, (_, i) => ({ name: `layer.${i}.bias`, shape: [16], data: values(16, i) }));
    const out = decodeShard(encodeShard(meta, [{ name: "w", shape: [512, 1024], data: big }, ...many]), "m");
    expect(out.tensors).toHaveLength(21);
    expect(firstDifference(out.tensors[0].data, big)).toBe(-1);
    expect(out.tensors.slice(1).map((t) => t.name)).toEqual(many.map((t) => t.name));
    out.tensors.slice(1).forEach((t, i) => expect(t.data).toEqual(many[i].data));
  });

  it("handles empty metadata values, the outer block, scalars, empty tensors and no tensors", () => {
    const outer: ShardMeta = { block: "outer", role: "outer", method: "", settings: {}, sourceHash: "", configHash: "" };
    const tensors = [
      { name: "scale", shape: [], data: new Float32Array([2.5]) },
      { name: "empty", shape: [0, 4], data: new Float32Array(0) },
    ];
    const out = decodeShard(encodeShard(outer, tensors), "m");
    expect(out.meta).toEqual(outer);
    expect(out.tensors.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([
      ["scale", [], [2.5]],
      ["empty", [0, 4], []],
    ]);
    const none = decodeShard(encodeShard({ ...meta, block: 0, role: "adapter" }, []), "m");
    expect(none.meta.block).toBe(0);
    expect(none.meta.role).toBe("adapter");
    expect(none.tensors).toEqual([]);
  });

  it("returns tensors that own their memory (not views of the file bytes)", () => {
    const bytes = encodeShard(meta, blockTensors());
    const out = decodeShard(bytes, "m");
    const before = Array.from(out.tensors[0].data);
    bytes.fill(0);
    expect(Array.from(out.tensors[0].data)).toEqual(before);
  });
});

describe("encodeShard refuses bad input", () => {
  const one = (data: Float32Array, shape = [data.length]) => [{ name: "w", shape, data }];

  it("refuses NaN, naming the tensor and the index", () => {
    const data = values(6, 1);
    data[4] = NaN;
    expect(() => encodeShard(meta, one(data))).toThrow(
      fileError(`Cannot write shard "block 3": tensor "w" holds NaN at flat index 4; shards store finite values only`),
    );
  });

  it("refuses infinities and values that overflow float16", () => {
    const inf = values(3, 1);
    inf[2] = -Infinity;
    expect(() => encodeShard(meta, one(inf))).toThrow(
      fileError(expect.stringContaining("holds -Infinity at flat index 2")),
    );
    const big = new Float32Array([1, 70000]);
    expect(encodeShard(meta, one(big)).byteLength).toBeGreaterThan(0);
    expect(() => encodeShard(meta, one(big), { dtype: "float16" })).toThrow(
      fileError(
        `Cannot write shard "block 3": tensor "w" holds 70000 at flat index 1, outside the float16 range (±65504)`,
      ),
    );
  });

  it("refuses a shape that disagrees with the data, a duplicate name and a bad shape", () => {
    expect(() => encodeShard(meta, one(values(6, 1), [2, 2]))).toThrow(
      fileError(expect.stringContaining(`tensor "w" has shape [2, 2] (4 elements) but 6 values`)),
    );
    const dup = [...one(values(2, 1)), ...one(values(2, 2))];
    expect(() => encodeShard(meta, dup)).toThrow(fileError(expect.stringContaining(`tensor "w" appears twice`)));
    expect(() => encodeShard(meta, one(values(2, 1), [-2, -1]))).toThrow(
      fileError(expect.stringContaining("invalid shape [-2,-1]")),
    );
  });

  it("refuses metadata that cannot round-trip", () => {
    const bad = (m: Partial<ShardMeta>) => () => encodeShard({ ...meta, ...m } as ShardMeta, []);
    const invalid = (block: string, text: string) => fileError(`Invalid shard metadata for "block ${block}": ${text}`);
    expect(bad({ block: "outer" })).toThrow(
      invalid("outer", `block "outer" does not go with role "middle" (only block "outer" has role "outer")`),
    );
    expect(bad({ role: "outer" })).toThrow(
      invalid("3", `block 3 does not go with role "outer" (only block "outer" has role "outer")`),
    );
    expect(bad({ block: -1 })).toThrow(invalid("-1", `block must be a non-negative integer or "outer", got -1`));
    expect(bad({ role: "head" as ShardMeta["role"] })).toThrow(
      invalid("3", `role must be one of adapter, middle, outer, got "head"`),
    );
    expect(bad({ settings: { lr: NaN } })).toThrow(invalid("3", "settings.lr is NaN, which JSON cannot store"));
    expect(bad({ settings: { w: new Float32Array(2) } })).toThrow(
      invalid("3", "settings.w is a Float32Array, not a JSON value"),
    );
    expect(bad({ positions: [3, 5] })).toThrow(invalid("3", "positions must be two or more consecutive increasing positions, got [3,5]"));
    expect(bad({ positions: [3] })).toThrow(invalid("3", "positions must be two or more consecutive increasing positions, got [3]"));
    expect(bad({ role: "adapter", positions: [3, 4] })).toThrow(
      invalid("3", `positions belong to a shared middle block, this shard holds role "adapter"`),
    );
  });

  it("round-trips the positions of a shared middle block (CRaSh) and omits them for any other", () => {
    expect(decodeShard(encodeShard({ ...meta, positions: [3, 4, 5] }, []), "mem").meta).toEqual({ ...meta, positions: [3, 4, 5] });
    expect("positions" in decodeShard(encodeShard(meta, []), "mem").meta).toBe(false);
  });
});

describe("writeShardFile and readShardFile", () => {
  it("writes atomically, reports size and sha256 of the file, and reads back", async () => {
    const path = join(root, "block-0003.arrow");
    const written = writeShardFile(path, meta, blockTensors(), { dtype: "float16" });
    const onDisk = await readFile(path);
    expect(written).toEqual({
      path,
      bytes: onDisk.byteLength,
      sha256: createHash("sha256").update(onDisk).digest("hex"),
    });
    expect((await readdir(root)).filter((f) => f.includes(".tmp-"))).toEqual([]);
    // Streamed into the file chunk by chunk, the bytes are exactly the in-memory encoding's.
    expect(new Uint8Array(onDisk)).toEqual(encodeShard(meta, blockTensors(), { dtype: "float16" }));
    const back = await readShardFile(path, { expectedSha256: written.sha256 });
    expect(back.meta).toEqual(meta);
    blockTensors().forEach((t, i) => expect(Array.from(back.tensors[i].data)).toEqual(Array.from(t.data, roundToHalf)));
  });

  it("writes streamed columns with the bytes of held ones, in both dtypes", async () => {
    for (const dtype of ["float32", "float16"] as const) {
      const path = join(root, `streamed-${dtype}.arrow`);
      const held = blockTensors();
      const runs: number[] = [];
      // fc1.weight streamed in uneven runs (5, 5, ..., 3), the rest held.
      const streamed: ShardTensorInput[] = held.map((t) => t.name !== "fc1.weight" ? t : {
        name: t.name,
        shape: t.shape,
        stream: (emit: (v: Float32Array) => void) => {
          for (let i = 0; i < t.data.length; i += 5) {
            runs.push(Math.min(5, t.data.length - i));
            emit(t.data.slice(i, i + 5));
          }
        },
      });
      // A column whose bytes need padding (6 float16 values: 12 bytes), streamed too.
      const odd = { name: "odd", shape: [2, 3], data: values(6, 9) };
      held.push(odd);
      streamed.push({ name: "odd", shape: [2, 3], stream: (emit: (v: Float32Array) => void) => emit(odd.data) });
      const written = writeShardFile(path, meta, streamed, { dtype });
      expect(runs.length).toBe(10);
      const onDisk = new Uint8Array(await readFile(path));
      expect(onDisk).toEqual(encodeShard(meta, held, { dtype }));
      expect(encodeShard(meta, streamed, { dtype })).toEqual(onDisk);
      expect(written.sha256).toBe(createHash("sha256").update(onDisk).digest("hex"));
    }
  });

  it("refuses a streamed column with a NaN, too few or too many values, and leaves no file", async () => {
    const path = join(root, "streamed-bad.arrow");
    const column = (runs: Float32Array[]): ShardTensorInput => ({
      name: "embed",
      shape: [2, 3],
      stream: (emit) => runs.forEach((r) => emit(r)),
    });
    const write = (runs: Float32Array[]) => () => writeShardFile(path, meta, [column(runs)]);
    expect(write([new Float32Array(3), Float32Array.from([1, NaN, 2])])).toThrow(
      `tensor "embed" holds NaN at flat index 4; shards store finite values only`,
    );
    expect(write([new Float32Array(4)])).toThrow(`tensor "embed" streamed 4 of the 6 values of shape [2, 3]`);
    expect(write([new Float32Array(4), new Float32Array(4)])).toThrow(
      `tensor "embed" streamed more than the 6 values of shape [2, 3]`,
    );
    expect(() => writeShardFile(path, meta, [column([Float32Array.from([1e6, 0, 0, 0, 0, 0])])], { dtype: "float16" }))
      .toThrow(`tensor "embed" holds 1000000 at flat index 0, outside the float16 range`);
    expect((await readdir(root)).filter((f) => f.startsWith("streamed-bad"))).toEqual([]);
  });

  it("replaces an existing file whole", async () => {
    const path = join(root, "replace.arrow");
    writeShardFile(path, meta, blockTensors());
    writeShardFile(path, { ...meta, method: "uniform" }, [{
      name: "x",
      shape: [1],
      data: new Float32Array([5]),
    }]);
    const back = await readShardFile(path);
    expect(back.meta.method).toBe("uniform");
    expect(back.tensors.map((t) => t.name)).toEqual(["x"]);
  });

  it("reports a sha256 mismatch naming the file and both hashes", async () => {
    const path = join(root, "corrupt.arrow");
    const { sha256 } = writeShardFile(path, meta, blockTensors());
    const bytes = await readFile(path);
    bytes[bytes.length >> 1] ^= 0xff;
    await writeFile(path, bytes);
    const actual = createHash("sha256").update(bytes).digest("hex");
    await expect(readShardFile(path, { expectedSha256: sha256 })).rejects.toThrow(
      fileError(`Shard "${path}" is corrupt: its sha256 is ${actual} but ${sha256} was expected`, path),
    );
  });

  it("reports a truncated file as truncated", async () => {
    const path = join(root, "truncated.arrow");
    const { bytes } = writeShardFile(path, meta, blockTensors());
    const full = await readFile(path);
    for (const keep of [bytes - 1, bytes >> 1, 7]) {
      await writeFile(path, full.subarray(0, keep));
      await expect(readShardFile(path)).rejects.toThrow(
        fileError(`Cannot read shard "${path}": file is truncated (${keep} bytes, no closing "ARROW1" footer magic)`),
      );
    }
  });

  it("reports a missing file and a file that is not Arrow", async () => {
    const missing = join(root, "nope.arrow");
    await expect(readShardFile(missing)).rejects.toThrow(
      fileError(`Cannot read shard "${missing}": file does not exist`),
    );
    const text = join(root, "text.arrow");
    await writeFile(text, "hello, this is not arrow");
    await expect(readShardFile(text)).rejects.toThrow(
      fileError(`Cannot read shard "${text}": not an Arrow IPC file (it does not start with "ARROW1")`),
    );
  });

  it("reports corrupt IPC framing inside intact magic bytes", () => {
    const bytes = encodeShard(meta, blockTensors());
    // Bytes 8..11 are the continuation marker and 12..15 the first message's metadata length.
    bytes.set([0xff, 0xff, 0xff, 0x7f], 12);
    expect(() => decodeShard(bytes, "x.arrow")).toThrow(
      fileError(
        expect.stringMatching(
          /^Cannot read shard "x\.arrow": Arrow IPC data is corrupt \(record batch 0: message metadata length 2147483647 does not fit the file\)$/,
        ),
      ),
    );
  });
});

describe("firstNonFinite", () => {
  it("finds the first NaN or ±Inf anywhere, across its 4,096-value blocks, and nothing in finite data", () => {
    const values = new Float32Array(3 * 4096 + 7).map((_, i) => (i % 2 ? -1 : 1) * 3.4e38 * Math.sin(i));
    values[5] = -0;
    values[6] = 1e-45; // a subnormal
    expect(firstNonFinite(values)).toBe(-1);
    for (const [at, bad] of [[0, NaN], [4095, Infinity], [4096, -Infinity], [3 * 4096 + 6, NaN], [8191, NaN]] as const) {
      const copy = values.slice();
      copy[at] = bad;
      copy[copy.length - 1] = NaN; // a later one is not the first
      expect(firstNonFinite(copy)).toBe(at);
    }
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
  });
});
