/**
 * Fuzzing the readers of untrusted files (docs/GUARANTEES.md "What is
 * verified"): seeded mutations (bit flips, truncations, length fields set to
 * edge values, splices, stomped runs) of shards, of a package manifest (also
 * field by field: values swapped, set to edge values, deleted) and of a
 * safetensors checkpoint. Each case runs in a worker with a time limit;
 * every case must end in a consistent decode or a CheckpointError, never a
 * hang or another error. The counts are printed with the results.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { saveCheckpoint } from "../../src/io/checkpoint.ts";
import { createPackageWriter, MANIFEST_FILE, verifyPackage } from "../../src/io/manifest.ts";
import { configSha256, type ShardMeta } from "../../src/io/shard_schema.ts";
import { encodeShard } from "../../src/io/shard_writer.ts";
import { fieldMutations, type FuzzCounts, fuzzSummary, mutations, runFuzz } from "./fuzz.ts";

/** Wall-clock limit of one case: the slowest clean case takes a few milliseconds, even on a loaded machine. */
const LIMIT_MS = 3000;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-fuzz-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const config = { model_type: "opt", hidden_size: 4, num_hidden_layers: 2 };
const meta = (block: number | "outer", role: ShardMeta["role"]): ShardMeta => ({
  block,
  role,
  method: "gradot",
  settings: { ratio: 0.5 },
  sourceHash: "ab".repeat(32),
  configHash: configSha256(config),
});
const ramp = (n: number, scale = 1) => Float32Array.from({ length: n }, (_, i) => scale * (i - n / 2));

/** Shards of each kind the writer makes: several float32 columns, float16, a scalar and an empty tensor, none. */
const shardCorpus = (): Uint8Array[] => [
  encodeShard(meta(0, "adapter"), [
    { name: "fc1.weight", shape: [4, 8], data: ramp(32, 0.1) },
    { name: "fc1.bias", shape: [8], data: ramp(8) },
    { name: "self_attn.q_proj.weight_u", shape: [4, 2], data: ramp(8, 0.5) },
  ]),
  encodeShard(meta("outer", "outer"), [{ name: "embed", shape: [6, 4], data: ramp(24, 0.25) }], { dtype: "float16" }),
  encodeShard(meta(1, "middle"), [
    { name: "scale", shape: [], data: new Float32Array([2]) },
    { name: "none", shape: [0, 3], data: new Float32Array(0) },
  ]),
];

/** Fails with every hang and every error that is not a CheckpointError; prints the counts. */
function expectClean(label: string, counts: FuzzCounts): void {
  console.log(fuzzSummary(label, counts));
  expect({ hung: counts.hung, untyped: counts.untyped }).toEqual({ hung: [], untyped: [] });
  expect(counts.typed).toBeGreaterThan(counts.cases / 4); // most mutations are caught, not silently read
}

describe("fuzzing", () => {
  it("decodeShard and readShardHeader: 600 mutated shards end in a consistent decode or a CheckpointError", async () => {
    const dir = join(root, "shards");
    await mkdir(dir);
    const counts = await runFuzz(mutations(shardCorpus(), 600, 20), (bytes) => ({ kind: "shard", bytes, dir }), LIMIT_MS);
    expect(counts.cases).toBe(600);
    expectClean("shard", counts);
  }, 300_000);

  it("verifyPackage: 300 byte-level and 300 field-level manifest mutations end in a valid package or a CheckpointError", async () => {
    const dir = join(root, "package");
    const writer = createPackageWriter(dir);
    const draft = {
      formatVersion: 2 as const,
      kind: "emulator" as const,
      architecture: "opt",
      config,
      split: { bottom: 1, top: 0 },
      method: "gradot",
      settings: { ratio: 0.5 },
      sourceHash: "ab".repeat(32),
      createdAt: "2026-01-01T00:00:00.000Z",
    };
    writer.writeShard(meta(0, "adapter"), [{ name: "fc1.weight", shape: [4, 8], data: ramp(32, 0.1) }]);
    writer.writeShard(meta(1, "middle"), [{ name: "fc1.weight", shape: [4, 3], data: ramp(12, 0.1) }]);
    writer.writeShard(meta("outer", "outer"), [{ name: "embed", shape: [6, 4], data: ramp(24, 0.25) }]);
    await writer.commit(draft);
    await verifyPackage(dir); // the unmutated package is valid
    const manifest = new Uint8Array(await readFile(join(dir, MANIFEST_FILE)));
    const bytes = await runFuzz(mutations([manifest], 300, 21), (b) => ({ kind: "manifest", bytes: b, dir }), LIMIT_MS);
    expectClean("manifest bytes", bytes);
    const packr = new Packr({ useRecords: false, moreTypes: true }); // as src/io/manifest.ts encodes
    const fields = fieldMutations(packr.unpack(manifest), (v) => packr.pack(v), 300, 23);
    const counts = await runFuzz(fields, (b) => ({ kind: "manifest", bytes: b, dir }), LIMIT_MS);
    expectClean("manifest fields", counts);
    expect(counts.decoded).toBeGreaterThan(0); // edits the checks cannot see (createdAt, extra, …) still read
  }, 300_000);

  it("openCheckpoint: 300 mutated safetensors files end in a consistent read or a CheckpointError", async () => {
    const source = join(root, "checkpoint");
    const tensors = [
      { name: "model.decoder.embed_tokens.weight", shape: [6, 4], data: ramp(24, 0.25) },
      { name: "model.decoder.layers.0.fc1.weight", shape: [8, 4], data: ramp(32, 0.1) },
      { name: "model.decoder.layers.0.fc1.bias", shape: [8], data: ramp(8) },
    ];
    const files: Uint8Array[] = [];
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      await saveCheckpoint(source, config, tensors, { dtype });
      files.push(new Uint8Array(await readFile(join(source, "model.safetensors"))));
    }
    const dir = join(root, "fuzzed-checkpoint");
    await saveCheckpoint(dir, config, tensors);
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    const counts = await runFuzz(mutations(files, 300, 22), (bytes) => ({ kind: "safetensors", bytes, dir }), LIMIT_MS);
    expectClean("safetensors", counts);
  }, 300_000);
});
