import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pack, unpack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createPackageWriter,
  type Manifest,
  manifestFormatVersion,
  readManifest,
  shardFileName,
  verifyPackage,
  writeManifest,
} from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import { writeShardFile } from "../../src/io/shard_writer.ts";
import { configSha256, type ShardMeta, type ShardTensor } from "../../src/io/shard_schema.ts";
import { fileError } from "./errors.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-manifest-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
const fresh = (label: string) => join(root, `${label}-${counter++}`);

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const SOURCE = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

const draft: Omit<Manifest, "shards"> = {
  formatVersion: 2,
  kind: "emulator",
  architecture: "opt",
  config: { model_type: "opt", hidden_size: 8, num_hidden_layers: 4, architectures: ["OPTForCausalLM"] },
  split: { bottom: 1, top: 1 },
  method: "gradot-drd",
  settings: { rank: 2, lambda: { attn: 0.5, mlp: 1 } },
  sourceHash: SOURCE,
  createdAt: "2025-05-01T12:00:00.000Z",
};

const shardMeta = (block: number | "outer", role: ShardMeta["role"]): ShardMeta => ({
  block,
  role,
  method: draft.method,
  settings: draft.settings,
  sourceHash: SOURCE,
  configHash: configSha256(draft.config),
});

const tensors = (seed: number): ShardTensor[] => [
  { name: "fc1.weight", shape: [4, 8], data: Float32Array.from({ length: 32 }, (_, i) => Math.cos(seed + i)) },
  { name: "fc1.bias", shape: [8], data: Float32Array.from({ length: 8 }, (_, i) => seed - i / 4) },
];

/** Writes a four-block emulator package (adapter, middle, middle, adapter, outer) through the package writer. */
async function writePackage(dir: string, seed = 0): Promise<Manifest> {
  const writer = createPackageWriter(dir);
  const roles: ShardMeta["role"][] = ["adapter", "middle", "middle", "adapter"];
  for (const [block, role] of roles.entries()) writer.writeShard(shardMeta(block, role), tensors(seed + block));
  writer.writeShard(shardMeta("outer", "outer"), tensors(seed + 9), { dtype: "float16" });
  return writer.commit(draft);
}

describe("writeManifest and readManifest", () => {
  const manifest: Manifest = {
    ...draft,
    shards: [{
      file: "block-0000.arrow",
      block: 0,
      role: "adapter",
      sha256: "a".repeat(64),
      bytes: 10,
      tensors: [{ name: "fc1.weight", shape: [4, 8], dtype: "float32" }],
    }],
  };

  it("round-trips every field, extra included", async () => {
    const dir = fresh("rt");
    const m = { ...manifest, extra: { note: "x", steps: [1, 2], weights: new Float32Array([0.5, -1.25]) } };
    await writeManifest(dir, m);
    expect(await readManifest(dir)).toEqual(m);
    expect((await readdir(dir)).sort()).toEqual(["manifest.msgpack"]);
  });

  it("is plain MessagePack maps that a generic decoder reads", async () => {
    const dir = fresh("plain");
    await writeManifest(dir, manifest);
    const generic = unpack(await readFile(join(dir, "manifest.msgpack")));
    expect(generic).toEqual(manifest);
    expect(Object.getPrototypeOf(generic)).toBe(Object.prototype);
  });

  it("names the path when the manifest is missing or not MessagePack", async () => {
    const dir = fresh("missing");
    await mkdir(dir);
    const path = join(dir, "manifest.msgpack");
    await expect(readManifest(dir)).rejects.toThrow(fileError(`Cannot read manifest "${path}": file does not exist`));
    await writeFile(path, "hello world");
    await expect(readManifest(dir)).rejects.toThrow(
      fileError(expect.stringMatching(/^Cannot read manifest ".*": not valid MessagePack \(/), path),
    );
    // 0xc1 is the one byte MessagePack never uses; msgpackr decodes it to a placeholder object.
    await writeFile(path, new Uint8Array([0xc1]));
    await expect(readManifest(dir)).rejects.toThrow(
      fileError(`Invalid manifest "${path}": expected a map at the top level`),
    );
  });

  it("refuses a truncated manifest", async () => {
    const dir = fresh("truncated");
    await writeManifest(dir, manifest);
    const path = join(dir, "manifest.msgpack");
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 20));
    await expect(readManifest(dir)).rejects.toThrow(
      fileError(expect.stringMatching(/^Cannot read manifest ".*": not valid MessagePack/)),
    );
  });

  it("refuses an unsupported format version and names a bad field", async () => {
    const write = async (value: unknown) => {
      const dir = fresh("bad");
      await mkdir(dir);
      await writeFile(join(dir, "manifest.msgpack"), pack(value));
      return readManifest(dir).then(
        () => "no error",
        (e: Error) => (e.name === "CheckpointError" ? e.message : `not a CheckpointError: ${e}`),
      );
    };
    expect(await write({ ...manifest, formatVersion: 1 })).toMatch(
      /^Invalid manifest ".*manifest\.msgpack": unsupported format version 1 \(this offtune reads versions 2 and 3\)$/,
    );
    const { split: _, ...noSplit } = manifest;
    expect(await write(noSplit)).toContain(`"split" must be {bottom, top} with non-negative integers, got undefined`);
    expect(await write({ ...manifest, kind: "model" })).toContain(
      `"kind" must be "emulator" or "adapter", got "model"`,
    );
    expect(await write({ ...manifest, createdAt: "yesterday" })).toContain(`"createdAt" is not a date: "yesterday"`);
    expect(await write([1, 2])).toContain("expected a map at the top level");
    const shard = manifest.shards[0];
    expect(await write({ ...manifest, shards: [{ ...shard, sha256: "XYZ" }] })).toContain(
      `shards[0].sha256 must be 64 lowercase hex digits, got "XYZ"`,
    );
    expect(await write({ ...manifest, shards: [shard, shard] })).toContain(
      `shards[1].file "block-0000.arrow" is listed twice`,
    );
    expect(await write({ ...manifest, shards: [{ ...shard, block: "outer" }] })).toContain(
      `shards[0] (block-0000.arrow): block "outer" does not go with role "adapter"`,
    );
    expect(await write({ ...manifest, shards: [{ ...shard, tensors: [{ name: "w", shape: [-1] }] }] })).toContain(
      `shards[0].tensors[0] must be {name, shape, dtype: "float32" | "float16"}, got {"name":"w","shape":[-1]}`,
    );
  });

  it("keeps blockIndices of an emulator that drops blocks, and refuses ones that disagree with its shards", async () => {
    const shard = (block: number, role: "adapter" | "middle") => ({
      file: shardFileName(block), block, role, sha256: "a".repeat(64), bytes: 10, tensors: [],
    });
    const dropped: Manifest = {
      ...draft,
      blockIndices: [0, 2, 3],
      shards: [shard(0, "adapter"), shard(2, "middle"), shard(3, "adapter")],
    };
    const dir = fresh("indices");
    await writeManifest(dir, dropped);
    expect((await readManifest(dir)).blockIndices).toEqual([0, 2, 3]);
    const refusal = (m: unknown) =>
      writeManifest(fresh("bad-indices"), m as Manifest).then(() => "no error", (e: Error) => e.message);
    expect(await refusal({ ...dropped, blockIndices: [0, 3, 2] })).toContain(
      `"blockIndices" must be a non-empty list of increasing block indices, got [0,3,2]`,
    );
    expect(await refusal({ ...dropped, blockIndices: [] })).toContain(`"blockIndices" must be a non-empty list`);
    expect(await refusal({ ...dropped, blockIndices: [0, 1, 2, 3] })).toContain(
      `"blockIndices" lists block 1 but no shard holds it`,
    );
    expect(await refusal({ ...dropped, blockIndices: [0, 3] })).toContain(
      `a shard holds block 2, which "blockIndices" does not list`,
    );
    expect(await refusal({ ...dropped, kind: "adapter" })).toContain(
      `"blockIndices" belongs to emulator packages, this is an adapter package`,
    );
  });

  it("reads a shared block (CRaSh) only in format version 3, at consecutive positions, and only a middle block", async () => {
    const shard = (block: number, role: "adapter" | "middle") => ({
      file: shardFileName(block), block, role, sha256: "a".repeat(64), bytes: 10, tensors: [],
    });
    const shared: Manifest = {
      ...draft,
      formatVersion: 3,
      blockIndices: [0, 1, 1, 3],
      shards: [shard(0, "adapter"), shard(1, "middle"), shard(3, "adapter")],
    };
    const dir = fresh("shared");
    await writeManifest(dir, shared);
    expect((await readManifest(dir)).blockIndices).toEqual([0, 1, 1, 3]);
    const refusal = (m: unknown) =>
      writeManifest(fresh("bad-shared"), m as Manifest).then(() => "no error", (e: Error) => e.message);
    expect(await refusal({ ...shared, formatVersion: 2 })).toContain(
      `"blockIndices" must be a non-empty list of increasing block indices, got [0,1,1,3] (a shared block needs format version 3)`,
    );
    expect(await refusal({ ...shared, blockIndices: [0, 1, 3, 1] })).toContain(
      `"blockIndices" must be a non-empty list of non-decreasing block indices, got [0,1,3,1]`,
    );
    expect(await refusal({ ...shared, blockIndices: [0, 0, 1, 3] })).toContain(
      `"blockIndices" runs block 0 at several positions, but its shard "block-0000.arrow" holds an adapter block (only middle blocks are shared)`,
    );
    expect(await refusal({ ...shared, blockIndices: [0, 1, 1] })).toContain(`a shard holds block 3, which "blockIndices" does not list`);
    expect(manifestFormatVersion([0, 1, 1, 3])).toBe(3);
    expect(manifestFormatVersion([0, 1, 3])).toBe(2);
    expect(manifestFormatVersion(undefined)).toBe(2);
  });

  it("refuses to write a manifest whose shard escapes the directory", async () => {
    const dir = fresh("escape");
    const bad = { ...manifest, shards: [{ ...manifest.shards[0], file: "../elsewhere.arrow" }] };
    await expect(writeManifest(dir, bad)).rejects.toThrow(
      fileError(expect.stringContaining(`shards[0].file must be a plain file name, got "../elsewhere.arrow"`)),
    );
  });
});

describe("createPackageWriter", () => {
  it("writes a package whose manifest lists each shard's true size and sha256", async () => {
    const dir = fresh("pkg");
    const m = await writePackage(dir);
    expect(m.shards.map((s) => [s.file, s.block, s.role])).toEqual([
      ["block-0000.arrow", 0, "adapter"],
      ["block-0001.arrow", 1, "middle"],
      ["block-0002.arrow", 2, "middle"],
      ["block-0003.arrow", 3, "adapter"],
      ["outer.arrow", "outer", "outer"],
    ]);
    for (const s of m.shards) {
      const bytes = await readFile(join(dir, s.file));
      expect([s.bytes, s.sha256]).toEqual([bytes.byteLength, sha256(bytes)]);
    }
    expect(await readManifest(dir)).toEqual(m);
    expect(await verifyPackage(dir)).toEqual(m);
    const back = await readShardFile(join(dir, m.shards[1].file), { expectedSha256: m.shards[1].sha256 });
    expect(back.meta).toEqual(shardMeta(1, "middle"));
    expect(back.tensors.map((t) => Array.from(t.data))).toEqual(tensors(1).map((t) => Array.from(t.data)));
    expect((await readdir(root)).filter((f) => f.startsWith(`${dir.split("/").pop()}.`))).toEqual([]);
  });

  it("adopts a shard another thread wrote into its directory, listed where adopted as if written then", async () => {
    const dir = fresh("adopt");
    const writer = createPackageWriter(dir);
    const roles: ShardMeta["role"][] = ["adapter", "middle", "middle", "adapter"];
    const outer = tensors(9);
    const written = writeShardFile(join(writer.temp, "outer.arrow"), shardMeta("outer", "outer"), outer, { dtype: "float16" }); // before the blocks
    for (const [block, role] of roles.entries()) writer.writeShard(shardMeta(block, role), tensors(block));
    const shapes = outer.map(({ name, shape }) => ({ name, shape }));
    expect(() => writer.adoptShard(shardMeta(3, "adapter"), shapes, written)).toThrow(
      fileError(expect.stringContaining(`a shard of that name was already written`)),
    );
    expect(() => writer.adoptShard(shardMeta("outer", "outer"), shapes, { ...written, bytes: written.bytes + 1 }, { dtype: "float16" })).toThrow(
      fileError(`Cannot adopt shard "outer.arrow" into package "${dir}": the file has ${written.bytes} bytes, not ${written.bytes + 1}`),
    );
    expect(() => writer.adoptShard(shardMeta("outer", "outer"), shapes, written, { file: "other.arrow" })).toThrow(
      fileError(`Cannot adopt shard "other.arrow" into package "${dir}": there is no such file`),
    );
    writer.adoptShard(shardMeta("outer", "outer"), shapes, written, { dtype: "float16" });
    const adopted = await writer.commit(draft);
    expect(adopted).toEqual(await writePackage(fresh("written"))); // the same shards, entries and order
    expect(await verifyPackage(dir)).toEqual(adopted);
  });

  it("keeps the final name empty until commit, and abort leaves nothing behind", async () => {
    const dir = fresh("abort");
    const writer = createPackageWriter(dir);
    expect(writer.temp).toMatch(new RegExp(`^${dir}\\.tmp-${process.pid}-[0-9a-f]{8}$`));
    writer.writeShard(shardMeta(0, "adapter"), tensors(0));
    await expect(readdir(dir)).rejects.toThrow();
    expect(await readdir(writer.temp)).toEqual(["block-0000.arrow"]);
    await writer.abort();
    await expect(readdir(writer.temp)).rejects.toThrow();
    await expect(readdir(dir)).rejects.toThrow();
    await expect(writer.commit(draft)).rejects.toThrow(`the transaction is already aborted`);
  });

  it("replaces an existing package only at commit, removing its stale files", async () => {
    const dir = fresh("replace");
    const first = await writePackage(dir, 0);
    await writeFile(join(dir, "stale.arrow"), "old");
    const writer = createPackageWriter(dir);
    writer.writeShard(shardMeta(0, "adapter"), tensors(50));
    // Not committed yet: the old package is intact and still verifies.
    expect(await verifyPackage(dir)).toEqual(first);
    const second = await writer.commit({ ...draft, kind: "adapter", split: { bottom: 1, top: 0 } });
    expect((await readdir(dir)).sort()).toEqual(["block-0000.arrow", "manifest.msgpack"]);
    expect(await verifyPackage(dir)).toEqual(second);
    const base = dir.split("/").pop()!;
    expect((await readdir(root)).filter((f) => f.startsWith(`${base}.`))).toEqual([]);
  });

  it("refuses a shard whose source or config hash differs from the manifest's, and bad file names", async () => {
    const dir = fresh("mismatch");
    const writer = createPackageWriter(dir);
    writer.writeShard({ ...shardMeta(0, "adapter"), sourceHash: "other" }, tensors(0));
    await expect(writer.commit(draft)).rejects.toThrow(
      fileError(
        `Cannot commit package "${dir}": shard "block-0000.arrow" has source hash "other" but the manifest has "${SOURCE}"`,
      ),
    );
    const other = createPackageWriter(fresh("config-mismatch"));
    other.writeShard({ ...shardMeta(0, "adapter"), configHash: "c".repeat(64) }, tensors(0));
    await expect(other.commit(draft)).rejects.toThrow(
      fileError(expect.stringContaining(
        `shard "block-0000.arrow" has config hash "${"c".repeat(64)}" but the manifest has "${configSha256(draft.config)}"`,
      )),
    );
    await other.abort();
    expect(() => writer.writeShard(shardMeta(0, "adapter"), [])).toThrow(
      fileError(
        expect.stringContaining(`"block-0000.arrow" to package "${dir}": a shard of that name was already written`),
      ),
    );
    expect(() => writer.writeShard(shardMeta(1, "middle"), [], { file: "a/b.arrow" })).toThrow(
      fileError(expect.stringContaining("not a plain file name")),
    );
    expect(() => writer.writeShard(shardMeta(1, "middle"), [], { file: "manifest.msgpack" })).toThrow(
      fileError(expect.stringContaining("reserved for the manifest")),
    );
    await writer.abort();
    await expect(readdir(dir)).rejects.toThrow();
  });

  it("names shards by block", () => {
    expect([shardFileName(0), shardFileName(12), shardFileName("outer")]).toEqual([
      "block-0000.arrow",
      "block-0012.arrow",
      "outer.arrow",
    ]);
  });
});

describe("verifyPackage", () => {
  it("reports a missing shard by name", async () => {
    const dir = fresh("v-missing");
    await writePackage(dir);
    await rm(join(dir, "block-0002.arrow"));
    await expect(verifyPackage(dir)).rejects.toThrow(
      fileError(
        `Package "${dir}" is missing shard "block-0002.arrow" listed in its manifest`,
        join(dir, "block-0002.arrow"),
      ),
    );
  });

  it("reports a corrupted shard with the file and both hashes", async () => {
    const dir = fresh("v-corrupt");
    const m = await writePackage(dir);
    const path = join(dir, "block-0001.arrow");
    const bytes = await readFile(path);
    bytes[bytes.length - 40] ^= 0x01;
    await writeFile(path, bytes);
    await expect(verifyPackage(dir)).rejects.toThrow(
      fileError(
        `Shard "${path}" is corrupt: its sha256 is ${sha256(bytes)} but the manifest lists ${m.shards[1].sha256}`,
      ),
    );
  });

  it("reports a shard whose size changed", async () => {
    const dir = fresh("v-size");
    const m = await writePackage(dir);
    const path = join(dir, "outer.arrow");
    await writeFile(path, new Uint8Array(7), { flag: "a" });
    await expect(verifyPackage(dir)).rejects.toThrow(
      fileError(`Shard "${path}" has ${m.shards[4].bytes + 7} bytes but the manifest lists ${m.shards[4].bytes}`),
    );
  });

  it("reports a package without a manifest", async () => {
    const dir = fresh("v-none");
    await mkdir(dir);
    await expect(verifyPackage(dir)).rejects.toThrow(
      fileError(`Cannot read manifest "${join(dir, "manifest.msgpack")}": file does not exist`),
    );
  });
});
