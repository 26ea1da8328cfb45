// `writeShards` with the outer shard written elsewhere (a GradOT build's
// calibration pool writes it on a worker thread; docs/DISTRIBUTED.md "Where 2
// slots wait"): the package is the one written in this thread, the write
// is called before any block arrives, and a failed write fails the package
// and leaves no directory behind.
import { lastValueFrom, tap, toArray } from "rxjs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openModel } from "../../src/model/model_handle.ts";
import { readManifest } from "../../src/io/manifest.ts";
import type { ShardDtype, ShardMeta } from "../../src/io/shard_schema.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { type OuterShardWritten, writeOuterShardFile, writeShards } from "../../src/operators/write_shards.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";

const FIXTURE = "fixtures/golden/opt"; // OPT, 2 blocks

let dir: string;
let model: ModelHandle;
beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-outer-elsewhere-"));
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

describe("writeShards with the outer shard written elsewhere", () => {
  test("writes the package this thread writes, the outer shard started before any block and listed last", async () => {
    const settings = { ratio: 0.5 };
    const here = join(dir, "here");
    await lastValueFrom(readCheckpoint(model).pipe(writeShards(here, { method: "test", settings, tokenizer: null }), toArray()));

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
    expect(await packageOf(elsewhere)).toEqual(await packageOf(here));
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
