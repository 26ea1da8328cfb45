// The CRaSh emulator (docs/METHOD.md §3 "CRaSh") on a model whose similar
// blocks are known by construction: a random 8-block OPT in which blocks 2, 3
// and 5 are identities (their attention and MLP outputs zeroed, so each
// returns its input: its output equals the block before's, CKA exactly 1).
// CRaSh must find the groups, store each kept block once, map every position
// to it, and run as a model built by repeating those blocks' weights by hand.
import { cp, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { StageEvent } from "../../src/events/stage_events.ts";
import { scoreLoglikelihoods } from "../../src/eval/loglikelihood.ts";
import { readManifest, verifyPackage, writeManifest } from "../../src/io/manifest.ts";
import { readShardHeader } from "../../src/io/shard_reader.ts";
import { ACTIVATIONS_PREFIX } from "../../src/io/stale_temps.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openPackage } from "../../src/model/open_package.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { buildCrashEmulator, crashGroups, sharedBlockIndices } from "../../src/operators/crash.ts";
import { keptMiddlePositions } from "../../src/operators/layer_drop.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";
import { referenceLogprob, tokensOf } from "../eval/reference.ts";
import { calibrationFor } from "./calibration_fixture.ts";
import { withIdentityBlocks } from "./identity_blocks.ts";

const SPLIT = { bottom: 1, top: 1 }; // middle: blocks 1..6
const IDENTITY = [2, 3, 5];
/** What CRaSh at ratio 0.5 must find: K = 3 groups, the identities with the block before them. */
const GROUPS = [[1, 2, 3], [4, 5], [6]];
/** The block each position runs: adapters 0 and 7, each group's first block at all its positions. */
const POSITIONS = [0, 1, 1, 1, 4, 4, 6, 7];

let root: string;
let base: ModelHandle;
let model: ModelHandle; // the random model with its identity blocks, in memory
const calibration = calibrationFor(64, 8, 16);

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-crash-"));
  const dir = join(root, "random-8");
  await writeRandomOpt(dir, { layers: 8, hidden: 32, heads: 4, ffn: 64, maxPositions: 32, vocabSize: 64, bosId: 2, eosId: 2, padId: 1 }, {
    seed: 3,
    dtype: "F32",
  });
  base = await openModel(dir, { split: SPLIT });
  model = await withIdentityBlocks(base, IDENTITY, dir);
});
afterAll(async () => {
  await model.close();
  await base.close();
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Log-likelihood requests over the random model's vocabulary. */
const requests = [12, 20, 9].map((n, k) => ({ tokens: tokensOf(n, 70 + k, 3, 64), start: 1 + (k * 3) % (n - 1) }));

describe("the CRaSh plan", () => {
  test("each position runs the first block of its group; adapter blocks run themselves", () => {
    expect(sharedBlockIndices(8, SPLIT, GROUPS)).toEqual(POSITIONS);
    expect(sharedBlockIndices(6, { bottom: 2, top: 0 }, [[2], [3, 4, 5]])).toEqual([0, 1, 2, 3, 3, 3]);
    expect(() => sharedBlockIndices(8, SPLIT, [[1, 2, 3], [4, 5]])).toThrow(
      "CRaSh groups [[1,2,3],[4,5]] do not cover the middle blocks 1, 2, 3, 4, 5, 6 of split 1+1",
    );
  });

  test("K = round(ratio · M) groups, as many blocks as LayerDrop keeps at the same ratio", () => {
    for (const [m, ratio] of [[6, 0.5], [8, 0.25], [7, 0.5], [20, 0.5], [3, 0.1], [5, 1]] as const) {
      const middle = Array.from({ length: m }, (_, i) => 2 + i);
      const groups = crashGroups(new Float64Array(m * m).fill(0.5), middle, ratio);
      expect(groups.length, `M=${m} ratio=${ratio}`).toBe(keptMiddlePositions(m, ratio).length);
      expect(groups.flat()).toEqual(middle);
    }
    expect(() => crashGroups(new Float64Array(4), [2, 3], 0)).toThrow("CRaSh ratio must be in (0, 1] (the fraction of middle blocks kept), got 0");
  });
});

describe("the CRaSh emulator of a model with known similar blocks", () => {
  const out = () => join(root, "crash");
  const events: StageEvent[] = [];

  test("finds the groups, stores each kept block once and maps every position to it, releasing every tensor and file", async () => {
    const tensors = tf.memory().numTensors;
    const stores = async () => (await readdir(tmpdir())).filter((f) => f.startsWith(`${ACTIVATIONS_PREFIX}${process.pid}-`));
    const storesBefore = await stores();
    const shards = await lastValueFrom(
      buildCrashEmulator(model, { ratio: 0.5, calibration, out: out(), events: { next: (e) => events.push(e) } }).pipe(toArray()),
    );
    expect(tf.memory().numTensors).toBe(tensors);
    expect(await stores()).toEqual(storesBefore); // the calibration activations are gone
    expect(shards.map((s) => s.block)).toEqual([0, 1, 4, 6, 7, "outer"]);
    expect((await readdir(out())).filter((f) => f.endsWith(".arrow")).sort()).toEqual([
      "block-0000.arrow", "block-0001.arrow", "block-0004.arrow", "block-0006.arrow", "block-0007.arrow", "outer.arrow",
    ]);

    const manifest = await verifyPackage(out());
    expect(manifest.formatVersion).toBe(3);
    expect(manifest.method).toBe("crash");
    expect(manifest.blockIndices).toEqual(POSITIONS);
    expect(manifest.settings).toEqual({
      ratio: 0.5,
      groups: GROUPS,
      keptMiddle: [1, 4, 6],
      calibration: { sequences: 8, length: 16 },
    });
    const cka = manifest.extra!.cka as number[][];
    expect(cka.length).toBe(6);
    expect(cka[0][1]).toBeCloseTo(1, 6); // block 2 returns block 1's output
    expect(cka[3][4]).toBeCloseTo(1, 6); // block 5 returns block 4's
    expect(cka[2][3]).toBeLessThan(0.9999); // block 4 changes block 3's

    // Parameters count unique blocks: 3 of the 6 middle blocks, as `offtune experiment` reports them.
    const listed = manifest.extra!.blocks as Array<{ index: number; role: string; params: number }>;
    const middle = listed.filter((b) => b.role === "middle");
    expect(middle.map((b) => b.index)).toEqual([1, 4, 6]);
    const blockParams = [...(await base.loadBlock(1)).values()].reduce((n, t) => (t.dispose(), n + t.size), 0);
    expect(middle.reduce((n, b) => n + b.params, 0)).toBe(3 * blockParams);

    // Progress: one mark per block forwarded, one for the CKA, one per shard; done runs 1..total.
    const marks = events.filter((e) => e.done !== undefined);
    expect(marks.map((e) => e.done)).toEqual(Array.from({ length: 8 + 1 + 6 }, (_, i) => i + 1));
    expect(new Set(marks.map((e) => e.total))).toEqual(new Set([15]));
    expect(marks.map((e) => e.stage)).toEqual([...Array(8).fill("forward"), "score", ...Array(6).fill("write")]);
  });

  test("opened, it runs each shared block at every position: its log-likelihoods equal a model of repeated weights", async () => {
    const emulator = await openPackage(out());
    const repeated: WeightMap[] = [];
    const original: WeightMap[] = [];
    try {
      expect(emulator.blockIndices).toEqual(POSITIONS);
      for (const i of POSITIONS) repeated.push(await model.loadBlock(i)); // block 1's weights at 1, 2, 3; block 4's at 4, 5
      for (const i of model.blockIndices) original.push(await model.loadBlock(i));
      const expected = requests.map((r) => referenceLogprob(model, repeated, r.tokens, r.start));
      for (const residency of ["resident", "streaming"] as const) {
        const got = await scoreLoglikelihoods(emulator, requests, { residency });
        const diff = Math.max(...got.map((g, k) => Math.abs(g.logprob - expected[k])));
        console.log(`crash ${residency} log-likelihoods vs repeated-weight model: max abs diff ${diff.toExponential(2)} (allowed 1e-4)`);
        expect(diff).toBeLessThan(1e-4);
      }
      // Sharing matters: the original runs identities where the emulator repeats blocks 1 and 4.
      const unshared = requests.map((r) => referenceLogprob(model, original, r.tokens, r.start));
      expect(Math.max(...unshared.map((u, k) => Math.abs(u - expected[k])))).toBeGreaterThan(1e-3);
    } finally {
      tf.dispose([...repeated, ...original].flatMap((b) => [...b.values()]));
      await emulator.close();
    }
  });

  test("each shared shard states its positions, so a manifest edited to share differently is refused", async () => {
    expect((await readShardHeader(join(out(), "block-0001.arrow"))).meta.positions).toEqual([1, 2, 3]);
    expect((await readShardHeader(join(out(), "block-0004.arrow"))).meta.positions).toEqual([4, 5]);
    expect((await readShardHeader(join(out(), "block-0006.arrow"))).meta.positions).toBeUndefined();
    const edited = join(root, "crash-edited");
    await cp(out(), edited, { recursive: true });
    const manifest = await readManifest(edited);
    await writeManifest(edited, { ...manifest, blockIndices: [0, 1, 1, 4, 4, 4, 6, 7] }); // block 4 now stands in for block 3
    await expect(verifyPackage(edited)).rejects.toThrow(
      `Shard "${join(edited, "block-0001.arrow")}" runs at positions 1, 2, 3 by its own header, but "${join(edited, "manifest.msgpack")}" runs it at positions 1, 2`,
    );
    await expect(openPackage(edited)).rejects.toThrow("runs at positions 1, 2, 3 by its own header");
  });

  test("a second build writes the same shards, byte for byte (a killed build is simply run again)", async () => {
    const again = join(root, "crash-again");
    await lastValueFrom(buildCrashEmulator(model, { ratio: 0.5, calibration, out: again }).pipe(toArray()));
    const hashes = async (dir: string) => (await readManifest(dir)).shards.map((s) => [s.file, s.sha256]);
    expect(await hashes(again)).toEqual(await hashes(out()));
  });

  test("a bad ratio or a split without middle blocks is a clear error, and nothing is written", async () => {
    const bad = join(root, "bad");
    await expect(lastValueFrom(buildCrashEmulator(model, { ratio: 1.5, calibration, out: bad }))).rejects.toThrow(
      "CRaSh ratio must be in (0, 1] (the fraction of middle blocks kept), got 1.5",
    );
    const noMiddle = { ...model, split: { bottom: 4, top: 4 } };
    await expect(lastValueFrom(buildCrashEmulator(noMiddle, { ratio: 0.5, calibration, out: bad }))).rejects.toThrow(
      `CRaSh needs middle blocks to cluster, but split 4+4 of "${model.source}" (8 blocks) leaves none`,
    );
    expect(await exists(bad)).toBe(false);
  });
});
