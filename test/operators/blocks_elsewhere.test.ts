// `writeShards` with each block's shard written elsewhere (a GradOT build's
// calibration pool posts them to its slots; docs/DISTRIBUTED.md "Where 2
// slots wait"): the package is the one written in this thread even when a
// later block's write ends first, the shards are emitted in block order with
// the writes' seconds, and a failed write fails the package and leaves no
// directory once every write has settled.
import { lastValueFrom, toArray } from "rxjs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openModel } from "../../src/model/model_handle.ts";
import { readManifest } from "../../src/io/manifest.ts";
import type { ShardDtype, ShardMeta, ShardTensor } from "../../src/io/shard_schema.ts";
import { writeShardFile } from "../../src/io/shard_writer.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { type BlockShardWritten, writeShards } from "../../src/operators/write_shards.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";

const FIXTURE = "fixtures/golden/opt"; // OPT, 2 blocks

let dir: string;
let model: ModelHandle;
beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-blocks-elsewhere-"));
  model = await openModel(FIXTURE, { split: { bottom: 0, top: 1 } });
});
afterAll(async () => {
  await model?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The package's files (manifest aside) and its manifest without its time of creation. */
async function packageOf(out: string) {
  const files = (await readdir(out)).filter((f) => f !== "manifest.msgpack").sort();
  const bytes = await Promise.all(files.map((f) => readFile(join(out, f))));
  const { createdAt: _, ...manifest } = await readManifest(out);
  return { files, bytes, manifest };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("writeShards with the block shards written elsewhere", () => {
  test("writes the package this thread writes, in block order though block 0's write ends last", async () => {
    const settings = { ratio: 0.5 };
    const here = join(dir, "here");
    await lastValueFrom(readCheckpoint(model).pipe(writeShards(here, { method: "test", settings, tokenizer: null }), toArray()));

    const elsewhere = join(dir, "elsewhere");
    const ended: number[] = [];
    const writes: Array<{ path: string; block: ShardMeta["block"]; dtype: ShardDtype; tensors: string[] }> = [];
    const blocksElsewhere = async (path: string, meta: ShardMeta, tensors: ShardTensor[], dtype: ShardDtype): Promise<BlockShardWritten> => {
      writes.push({ path, block: meta.block, dtype, tensors: tensors.map((t) => t.name) });
      await sleep(meta.block === 0 ? 80 : 5); // as another thread would: later, block 1's first
      const { path: _, ...written } = writeShardFile(path, meta, tensors, { dtype });
      ended.push(meta.block as number);
      return { ...written, seconds: 0.5 + (meta.block as number) };
    };
    const events: StageEvent[] = [];
    const shards = await lastValueFrom(
      readCheckpoint(model).pipe(
        writeShards(elsewhere, { method: "test", settings, tokenizer: null, events: { next: (e) => events.push(e) }, blocksElsewhere }),
        toArray(),
      ),
    );
    expect(ended).toEqual([1, 0]);
    expect(writes.map((w) => [basename(w.path), basename(dirname(w.path)).startsWith(`${basename(elsewhere)}.tmp-`), w.block, w.dtype]))
      .toEqual([["block-0000.arrow", true, 0, "float32"], ["block-0001.arrow", true, 1, "float32"]]);
    expect(writes[0].tensors.length).toBeGreaterThan(0);
    expect(shards.map((s) => s.block)).toEqual([0, 1, "outer"]);
    expect(await packageOf(elsewhere)).toEqual(await packageOf(here));
    expect(events.filter((e) => e.stage === "write" && e.block !== undefined).map((e) => [e.block, e.seconds])).toEqual([[0, 0.5], [1, 1.5]]);
  });

  test("a failed write fails the package and leaves no directory once the other write has settled", async () => {
    const out = join(dir, "failed");
    let slowSettled = false;
    const blocksElsewhere = async (path: string, meta: ShardMeta, tensors: ShardTensor[], dtype: ShardDtype): Promise<BlockShardWritten> => {
      if (meta.block === 1) {
        await sleep(5);
        throw new Error("the worker thread exited");
      }
      await sleep(80); // still writing into the package's directory when block 1 fails
      const { path: _, ...written } = writeShardFile(path, meta, tensors, { dtype });
      slowSettled = true;
      return { ...written, seconds: 0 };
    };
    await expect(lastValueFrom(readCheckpoint(model).pipe(writeShards(out, { method: "test", settings: {}, tokenizer: null, blocksElsewhere }))))
      .rejects.toThrow("the worker thread exited");
    expect(slowSettled).toBe(false); // failed at once, not after block 0's write
    await sleep(150); // the abort removes the temporary directory once block 0's write has settled
    expect(slowSettled).toBe(true);
    expect((await readdir(dir)).filter((f) => f.startsWith("failed"))).toEqual([]);
  });
});
