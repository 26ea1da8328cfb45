// `writeShards` with shards written elsewhere (a GradOT build's calibration
// pool: the outer shard on a worker thread, each block's on a slot;
// docs/DISTRIBUTED.md "How a GradOT build uses the cores", "Where 2 slots
// wait"). The package is the one written in this thread: the outer write is
// called before any block arrives, block shards are listed and emitted in
// block order even when a later block's write ends first, and a failed write
// fails the package and leaves no directory once every write has settled.
import { lastValueFrom, tap, toArray } from "rxjs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openModel } from "../../src/model/model_handle.ts";
import { readManifest } from "../../src/io/manifest.ts";
import type { ShardDtype, ShardMeta, ShardTensor } from "../../src/io/shard_schema.ts";
import { writeShardFile } from "../../src/io/shard_writer.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { type BlockShardWritten, type OuterShardWritten, writeOuterShardFile, writeShards } from "../../src/operators/write_shards.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";

const FIXTURE = "fixtures/golden/opt"; // OPT, 2 blocks

let dir: string;
let model: ModelHandle;
const settings = { ratio: 0.5 };
/** The package this thread writes, which every write elsewhere must give. */
const here = () => join(dir, "here");
beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-shards-elsewhere-"));
  model = await openModel(FIXTURE, { split: { bottom: 0, top: 1 } });
  await lastValueFrom(readCheckpoint(model).pipe(writeShards(here(), { method: "test", settings, tokenizer: null }), toArray()));
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

describe("writeShards with the outer shard written elsewhere", () => {
  test("writes the package this thread writes, the outer shard started before any block and listed last", async () => {
    const elsewhere = join(dir, "elsewhere");
    let blocksBefore: number | undefined;
    let blocksSeen = 0; // shards written so far
    const writes: Array<{ path: string; meta: ShardMeta; dtype: ShardDtype }> = [];
    const write = async (path: string, meta: ShardMeta, dtype: ShardDtype): Promise<OuterShardWritten> => {
      blocksBefore = blocksSeen;
      writes.push({ path, meta, dtype });
      await new Promise((r) => setTimeout(r, 20)); // as another thread would: later
      return { ...writeOuterShardFile(model, path, meta, dtype), seconds: 0.25 };
    };
    const events: StageEvent[] = [];
    const shards = await lastValueFrom(
      readCheckpoint(model).pipe(
        writeShards(elsewhere, { method: "test", settings, tokenizer: null, events: { next: (e) => events.push(e) }, outerElsewhere: { model, write } }),
        tap(() => blocksSeen++),
        toArray(),
      ),
    );
    expect(blocksBefore).toBe(0); // called at subscription, not after the blocks
    expect(writes.map((w) => [basename(w.path), basename(dirname(w.path)).startsWith(`${basename(elsewhere)}.tmp-`), w.meta.block, w.dtype]))
      .toEqual([["outer.arrow", true, "outer", "float32"]]);
    expect(shards.map((s) => s.block)).toEqual([0, 1, "outer"]);
    expect(await packageOf(elsewhere)).toEqual(await packageOf(here()));
    expect(events.filter((e) => e.stage === "write" && e.block === undefined).map((e) => e.seconds)).toEqual([0.25]);
  });

  test("a failed write fails the package and leaves no directory", async () => {
    const out = join(dir, "failed");
    const write = async (): Promise<OuterShardWritten> => {
      await new Promise((r) => setTimeout(r, 20));
      throw new Error("the worker thread exited");
    };
    await expect(lastValueFrom(readCheckpoint(model).pipe(writeShards(out, { method: "test", settings: {}, tokenizer: null, outerElsewhere: { model, write } }))))
      .rejects.toThrow("the worker thread exited");
    await new Promise((r) => setTimeout(r, 50)); // the abort removes the temporary directory once the write has settled
    expect((await readdir(dir)).filter((f) => f.startsWith("failed"))).toEqual([]);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("writeShards with the block shards written elsewhere", () => {
  test("writes the package this thread writes, in block order though block 0's write ends last", async () => {
    const elsewhere = join(dir, "blocks-elsewhere");
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
    expect(await packageOf(elsewhere)).toEqual(await packageOf(here()));
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
