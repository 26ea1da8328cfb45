/**
 * Issue 20's cases 3, 5 and 7 (docs/GUARANTEES.md "What is verified"):
 * packages whose manifest was edited, whose shards were swapped or taken
 * from another model, whose bytes are corrupt under a matching hash, or
 * whose shapes disagree with the config, are refused by the verbs that use
 * them (eval, plug-in) and by `openPackage`/`withAdapter`, each with a
 * message naming the file and both sides.
 */
import { cp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as evalVerb } from "../../pipelines/eval.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { type Manifest, MANIFEST_FILE, readManifest, verifyPackage, writeManifest } from "../../src/io/manifest.ts";
import { configSha256 } from "../../src/io/shard_schema.ts";
import { sha256Hex } from "../../src/io/shard_writer.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { withAdapter } from "../../src/model/model_source.ts";
import { openPackage } from "../../src/model/open_package.ts";
import { shardTensors } from "../../src/operators/write_shards.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { writeAdapterPackage } from "../../src/train/tune_package.ts";
import { fileError } from "../io/errors.ts";
import { tempDir, tinyModel } from "../tune/fixture.ts";

const SPLIT = { bottom: 1, top: 1 };

let root: string;
let model: string;
let otherModel: string;
let emulator: string;
let adapter: string;
let otherAdapter: string;
let counter = 0;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await tempDir("integrity");
  model = "fixtures/tiny";
  otherModel = await tinyModel(join(root, "other-model"));
  emulator = join(root, "emulator");
  const built = await buildEmulator(["--method", "layerdrop", "--model", model, "--out", emulator, "--split", "1,1", "--ratio", "1", "--quiet"]);
  expect(built).toBe(0);
  adapter = await fullAdapter(model, join(root, "adapter"));
  otherAdapter = await fullAdapter(otherModel, join(root, "other-adapter"));
}, 120_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** An adapter package of the model's own adapter blocks (blocks 0 and 3), as tune writes one. */
async function fullAdapter(modelDir: string, out: string, edit: (m: ModelHandle) => ModelHandle = (m) => m): Promise<string> {
  const handle = await openModel(modelDir, { split: SPLIT });
  try {
    const parts = new Map<number, ReturnType<typeof shardTensors>>();
    for (const i of [0, 3]) {
      const weights = await handle.loadBlock(i);
      parts.set(i, shardTensors(weights));
      tf.dispose([...weights.values()]);
    }
    await writeAdapterPackage(out, { model: edit(handle), parts, method: "full", settings: {}, extra: { finished: true } });
  } finally {
    await handle.close();
  }
  return out;
}

/** A copy of package `dir` whose manifest `edit` changed (validated and rewritten as a writer would). */
async function edited(dir: string, edit: (m: Manifest) => void): Promise<string> {
  const copy = join(root, `copy-${counter++}`);
  await cp(dir, copy, { recursive: true });
  const manifest = await readManifest(copy);
  edit(manifest);
  await writeManifest(copy, manifest);
  return copy;
}

/** Lists `file`'s current size and SHA-256 in the manifest of `dir`, as a forger would. */
async function restamp(dir: string, file: string): Promise<void> {
  const bytes = new Uint8Array(await readFile(join(dir, file)));
  const manifest = await readManifest(dir);
  const entry = manifest.shards.find((s) => s.file === file)!;
  entry.sha256 = sha256Hex(bytes);
  entry.bytes = bytes.byteLength;
  await writeManifest(dir, manifest);
}

const evalArgs = (modelDir: string, adapterDir?: string) => [
  "--model", modelDir, ...(adapterDir ? ["--adapter", adapterDir] : []), "--tasks", "lastword_cloze", "--limit", "2", "--quiet",
];
const plugArgs = (adapterDir: string) => [
  "--model", model, "--adapter", adapterDir, "--split", "1,1", "--out", join(root, `plugged-${counter++}`), "--quiet",
];

describe("3. the manifest is checked against each shard's own header", () => {
  it("swapped block numbers: the shard says which block it holds", async () => {
    const swapped = await edited(emulator, (m) => {
      const [one, two] = [m.shards.find((s) => s.block === 1)!, m.shards.find((s) => s.block === 2)!];
      [one.block, two.block] = [2, 1];
    });
    const message = `Shard "${join(swapped, "block-0001.arrow")}" holds block 1 (middle), ` +
      `but "${join(swapped, MANIFEST_FILE)}" lists it as block 2 (middle)`;
    await expect(openPackage(swapped)).rejects.toThrow(fileError(message, join(swapped, "block-0001.arrow")));
    await expect(evalVerb(evalArgs(swapped))).rejects.toThrow(message);
  });

  for (const [key, value] of [["num_attention_heads", 4], ["num_hidden_layers", 3]] as const) {
    it(`an edited config (${key} ${value}) no longer matches the config hash every shard carries`, async () => {
      const before = configSha256((await readManifest(emulator)).config);
      const changed = await edited(emulator, (m) => (m.config[key] = value));
      const after = configSha256((await readManifest(changed)).config);
      const message = `Shard "${join(changed, "block-0000.arrow")}" was written for a config with sha256 ${before}, ` +
        `but the config in "${join(changed, MANIFEST_FILE)}" has sha256 ${after} ` +
        `(the manifest's config was edited, or the shard is from another package)`;
      await expect(openPackage(changed)).rejects.toThrow(fileError(message));
      await expect(evalVerb(evalArgs(changed))).rejects.toThrow(message);
    });
  }

  it("an edited split does not make a middle block pass for an adapter block", async () => {
    const split = await edited(emulator, (m) => (m.split = { bottom: 2, top: 1 }));
    const message = `Shard "${join(split, "block-0001.arrow")}" holds block 1 as middle, ` +
      `but split 2+1 in "${join(split, MANIFEST_FILE)}" makes it adapter`;
    await expect(openPackage(split)).rejects.toThrow(fileError(message, join(split, "block-0001.arrow")));
  });

  it("an adapter whose manifest lists no shard, or one fewer, does not plug in as the base model or a partial adapter", async () => {
    const none = await edited(adapter, (m) => (m.shards = []));
    const fewer = await edited(adapter, (m) => (m.shards = m.shards.filter((s) => s.block !== 3)));
    const lacks = (dir: string, missing: string, listed: string) =>
      `Adapter "${dir}" lacks adapter block${missing.includes(",") ? "s" : ""} ${missing}: "${model}" (split 1+1 of 4 blocks) ` +
      `has adapter blocks 0, 3, the manifest lists ${listed}`;
    await expect(plugIn(plugArgs(none))).rejects.toThrow(fileError(lacks(none, "0, 3", "none"), join(none, MANIFEST_FILE)));
    await expect(plugIn(plugArgs(fewer))).rejects.toThrow(lacks(fewer, "3", "0"));
    await expect(evalVerb(evalArgs(model, fewer))).rejects.toThrow(lacks(fewer, "3", "0"));
  });

  it("a shard from another model is refused even when the manifest lists its hash", async () => {
    const mixed = await edited(adapter, () => {});
    await cp(join(otherAdapter, "block-0000.arrow"), join(mixed, "block-0000.arrow"));
    await restamp(mixed, "block-0000.arrow");
    const [ours, theirs] = [(await readManifest(adapter)).sourceHash, (await readManifest(otherAdapter)).sourceHash];
    expect(ours).not.toBe(theirs);
    const message = `Shard "${join(mixed, "block-0000.arrow")}" was written from model ${theirs}, ` +
      `but "${join(mixed, MANIFEST_FILE)}" names model ${ours}`;
    await expect(verifyPackage(mixed)).rejects.toThrow(fileError(message));
    await expect(plugIn(plugArgs(mixed))).rejects.toThrow(message);
  });

  it("an adapter made for another config than the model's is refused, naming the keys", async () => {
    const other = await fullAdapter(model, join(root, "other-config"), (m) => ({
      ...m,
      cfg: { ...m.cfg, raw: { ...m.cfg.raw, dropout: 0.5 } },
    }));
    await expect(plugIn(plugArgs(other))).rejects.toThrow(
      fileError(`Adapter "${other}" has another config than "${model}" (adapter vs model: dropout 0.5 vs 0)`),
    );
  });

  it("the unedited packages pass every check", async () => {
    await (await openPackage(emulator)).close();
    const base = await openModel(model, { split: SPLIT });
    const plugged = await withAdapter(base, adapter);
    tf.dispose([...(await plugged.loadBlock(3)).values()]);
    await base.close();
  });
});

describe("5. a shard whose bytes are corrupt but whose manifest hash matches them", () => {
  /**
   * `bytes` with the record batch's field-node count set to 2^31 - 1: found
   * as the count 2·columns followed by the first column's nodes (one row of
   * `listSize` values, no nulls). apache-arrow would loop over that count.
   */
  function hugeNodeCount(bytes: Uint8Array, columns: number, listSize: number): Uint8Array {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 36 <= bytes.length; at += 4) {
      const match = view.getInt32(at, true) === 2 * columns && view.getBigInt64(at + 4, true) === 1n &&
        view.getBigInt64(at + 12, true) === 0n && view.getBigInt64(at + 20, true) === BigInt(listSize);
      if (match) {
        const out = bytes.slice();
        new DataView(out.buffer).setInt32(at, 0x7fffffff, true);
        return out;
      }
    }
    throw new Error("no field-node vector found");
  }

  it("is refused with a typed error naming the shard, by eval and plug-in, promptly", async () => {
    const forged = await edited(adapter, () => {});
    const file = join(forged, "block-0003.arrow");
    const entry = (await readManifest(forged)).shards.find((s) => s.block === 3)!;
    const first = entry.tensors[0];
    await writeFile(file, hugeNodeCount(new Uint8Array(await readFile(file)), entry.tensors.length, first.shape.reduce((a, b) => a * b, 1)));
    await restamp(forged, "block-0003.arrow");
    await verifyPackage(forged); // the footer is intact: only decoding the block finds the damage
    const message = expect.stringMatching(
      new RegExp(
        `^Cannot read shard "${file}": Arrow IPC data is corrupt \\(record batch 0: its message metadata: ` +
          `the field nodes \\(2147483647 elements\\) at byte \\d+ \\(34359738352 bytes\\) lies outside it \\(bytes \\d+\\.\\.\\d+\\)\\)$`,
      ),
    );
    const started = performance.now();
    await expect(plugIn(plugArgs(forged))).rejects.toThrow(fileError(message, file));
    await expect(evalVerb(evalArgs(model, forged))).rejects.toThrow(fileError(message, file));
    expect(performance.now() - started).toBeLessThan(10_000); // two verb runs, each refused at the block's load
  });
});

describe("7. shapes that disagree with the manifest or the config", () => {
  it("a manifest that lists another shape than the shard holds names the shard, the tensor and both shapes", async () => {
    const listed = await edited(emulator, (m) => {
      const block = m.shards.find((s) => s.block === 0)!;
      block.tensors.find((t) => t.name === "fc1.weight")!.shape = [64, 512];
    });
    await expect(openPackage(listed)).rejects.toThrow(
      fileError(
        `Shard "${join(listed, "block-0000.arrow")}" holds tensor "fc1.weight" [64, 256] float32 ` +
          `where "${join(listed, MANIFEST_FILE)}" lists "fc1.weight" [64, 512] float32`,
      ),
    );
  });

  it("an adapter tensor of a shape the model's config does not imply is refused before any forward pass", async () => {
    const narrow = await fullAdapter(model, join(root, "narrow"));
    const handle = await openModel(model, { split: SPLIT });
    const weights = await handle.loadBlock(0);
    const parts = new Map([[0, shardTensors(weights)], [3, shardTensors(weights)]]);
    tf.dispose([...weights.values()]);
    const fc1 = parts.get(0)!.find((t) => t.name === "fc1.weight")!;
    parts.get(0)![parts.get(0)!.indexOf(fc1)] = { name: "fc1.weight", shape: [64, 8], data: fc1.data.slice(0, 512) };
    await writeAdapterPackage(narrow, { model: handle, parts, method: "full", settings: {}, extra: { finished: true } });
    await handle.close();
    const message = `Shard "${join(narrow, "block-0000.arrow")}" tensor "fc1.weight" has shape [64, 8], ` +
      `but the model "${model}" implies [64, 256]`;
    await expect(plugIn(plugArgs(narrow))).rejects.toThrow(fileError(message));
    await expect(evalVerb(evalArgs(model, narrow))).rejects.toThrow(message);
  });
});
