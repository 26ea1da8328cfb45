// The OT LayerDrop emulator (docs/METHOD.md §3): which blocks it keeps, its
// package, and its logits against the original model run over the kept
// blocks by hand.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { scoreLoglikelihoods } from "../../src/eval/loglikelihood.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { buildLayerDropEmulator, dropBlocks, keptMiddlePositions, layerDropBlocks } from "../../src/operators/layer_drop.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openPackage } from "../../src/model/open_package.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { writeShards } from "../../src/operators/write_shards.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { referenceLogprob, tokensOf } from "../eval/reference.ts";

const SMALL = "fixtures/small"; // OPT, 12 blocks; default split 2+2 leaves 8 middle blocks
/** The blocks a ratio-0.5 LayerDrop emulator of fixtures/small keeps: adapters 0, 1, 10, 11 and every other middle block. */
const KEPT_HALF = [0, 1, 2, 4, 6, 8, 10, 11];

let root: string;
let model: ModelHandle;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-layerdrop-"));
  model = await openModel(SMALL);
});
afterAll(async () => {
  await model.close();
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);
const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Token ids `[2, 16]` for logits comparisons. */
function idsTensor(vocab: number) {
  return tf.tensor2d(tokensOf(32, 7, 3, vocab), [2, 16], "int32");
}

/** The original model run by hand over `order` (its own blocks, read from the checkpoint): embed, blocks, head. */
async function handForward(order: readonly number[]): Promise<Float32Array> {
  const ids = idsTensor(model.cfg.vocabSize);
  let h = model.arch.embed(model.outer, ids, model.cfg); // [B, T, d]
  for (const i of order) {
    const weights = await model.loadBlock(i);
    const next = model.arch.block(weights, h, model.cfg); // [B, T, d]
    tf.dispose([h, ...weights.values()]);
    h = next;
  }
  const logits = model.arch.head(model.outer, h, model.cfg); // [B, T, V]
  const data = logits.dataSync() as Float32Array;
  tf.dispose([ids, h, logits]);
  return data;
}

/** An opened package's logits, its blocks loaded in the order the package gives. */
async function packageLogits(pkg: ModelHandle): Promise<Float32Array> {
  const blocks: WeightMap[] = [];
  for (const i of pkg.blockIndices) blocks.push(await pkg.loadBlock(i));
  const data = tf.tidy(() => {
    const ids = idsTensor(pkg.cfg.vocabSize);
    let h = pkg.arch.embed(pkg.outer, ids, pkg.cfg);
    for (const weights of blocks) h = pkg.arch.block(weights, h, pkg.cfg);
    return pkg.arch.head(pkg.outer, h, pkg.cfg).dataSync() as Float32Array;
  });
  tf.dispose(blocks.flatMap((b) => [...b.values()]));
  return data;
}

describe("which blocks uniform LayerDrop keeps", () => {
  test("round(ratio·M) middle positions at round(i·M/K)", () => {
    const cases: Array<[middle: number, ratio: number, kept: number[]]> = [
      [8, 0.5, [0, 2, 4, 6]],
      [8, 0.25, [0, 4]],
      [8, 0.75, [0, 1, 3, 4, 5, 7]], // K = 6: 0, 1.33, 2.67, 4, 5.33, 6.67
      [8, 1, [0, 1, 2, 3, 4, 5, 6, 7]],
      [20, 0.5, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]], // OPT-1.3B: 24 blocks, split 2+2
      [7, 0.5, [0, 2, 4, 5]], // K = round(3.5) = 4: 0, 1.75, 3.5, 5.25
      [6, 1 / 3, [0, 3]],
      [3, 0.1, [0]], // round(0.3) = 0, but one block is always kept
      [1, 0.5, [0]],
    ];
    for (const [middle, ratio, kept] of cases) expect(keptMiddlePositions(middle, ratio), `M=${middle} ratio=${ratio}`).toEqual(kept);
  });

  test("the emulator keeps every adapter block and names blocks by their original index", () => {
    expect(layerDropBlocks(12, { bottom: 2, top: 2 }, 0.5)).toEqual(KEPT_HALF);
    expect(layerDropBlocks(12, { bottom: 2, top: 2 }, 1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(layerDropBlocks(12, { bottom: 0, top: 1 }, 0.25)).toEqual([0, 4, 7, 11]); // M = 11, K = 3: 0, 3.67, 7.33
    expect(layerDropBlocks(24, { bottom: 2, top: 2 }, 0.5)).toEqual([0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 23]);
  });

  test("a ratio outside (0, 1] is a clear error, and the builder writes nothing", async () => {
    for (const ratio of [0, -0.5, 1.5, Number.NaN]) {
      expect(() => keptMiddlePositions(8, ratio)).toThrow(
        `LayerDrop ratio must be in (0, 1] (the fraction of middle blocks kept), got ${ratio}`,
      );
    }
    const out = join(root, "bad-ratio");
    await expect(lastValueFrom(buildLayerDropEmulator(model, { ratio: 1.5, out }))).rejects.toThrow(
      "LayerDrop ratio must be in (0, 1] (the fraction of middle blocks kept), got 1.5",
    );
    expect(await exists(out)).toBe(false);
  });
});

describe("the LayerDrop emulator of fixtures/small", () => {
  const half = () => join(root, "half");
  beforeAll(async () => {
    const before = tf.memory().numTensors;
    await lastValueFrom(buildLayerDropEmulator(model, { ratio: 0.5, out: half() }).pipe(toArray()));
    expect(tf.memory().numTensors).toBe(before);
  });

  test("ratio 0.5: 4 middle blocks with exactly half the middle parameters; the manifest says what was kept", async () => {
    const manifest = await readManifest(half());
    expect(manifest.method).toBe("ot-layerdrop");
    expect(manifest.settings).toEqual({ ratio: 0.5, keptMiddle: [2, 4, 6, 8] });
    expect(manifest.blockIndices).toEqual(KEPT_HALF);
    expect(manifest.split).toEqual({ bottom: 2, top: 2 });
    expect(manifest.sourceHash).toBe(model.sourceHash);
    expect(manifest.shards.map((s) => [s.block, s.role])).toEqual([
      [0, "adapter"], [1, "adapter"], [2, "middle"], [4, "middle"],
      [6, "middle"], [8, "middle"], [10, "adapter"], [11, "adapter"], ["outer", "outer"],
    ]);

    let originalMiddle = 0;
    for (let i = 2; i < 10; i++) {
      const weights = await model.loadBlock(i);
      originalMiddle += [...weights.values()].reduce((n, t) => n + t.size, 0);
      tf.dispose([...weights.values()]);
    }
    let emulatorMiddle = 0;
    for (const s of manifest.shards.filter((s) => s.role === "middle")) {
      const { tensors } = await readShardFile(join(half(), s.file), { expectedSha256: s.sha256 });
      emulatorMiddle += tensors.reduce((n, t) => n + sizeOf(t.shape), 0);
    }
    expect(2 * emulatorMiddle).toBe(originalMiddle);
    const listed = (manifest.extra?.blocks as Array<{ role: string; params: number }>).filter((b) => b.role === "middle");
    expect(listed.reduce((n, b) => n + b.params, 0)).toBe(emulatorMiddle); // what `offtune experiment` reports

    const emulator = await openPackage(half());
    expect(emulator.blockIndices).toEqual(KEPT_HALF);
    await emulator.close();
  });

  test("its logits equal the original model run by hand over the kept blocks, and the eval engine agrees", async () => {
    const emulator = await openPackage(half());
    try {
      const expected = await handForward(KEPT_HALF);
      const diff = maxAbsDiff(await packageLogits(emulator), expected);
      console.log(`layerdrop logits vs hand-run kept blocks: max abs diff ${diff.toExponential(2)} (allowed 1e-5)`);
      expect(diff).toBeLessThan(1e-5);
      expect(maxAbsDiff(expected, await handForward(model.blockIndices))).toBeGreaterThan(1e-2); // dropping blocks matters

      const kept: WeightMap[] = [];
      for (const i of KEPT_HALF) kept.push(await model.loadBlock(i));
      const requests = [12, 30, 7].map((n, k) => ({ tokens: tokensOf(n, 40 + k, 3, model.cfg.vocabSize), start: 1 + (k * 3) % (n - 1) }));
      const reference = requests.map((r) => referenceLogprob(model, kept, r.tokens, r.start));
      tf.dispose(kept.flatMap((b) => [...b.values()]));
      for (const residency of ["resident", "streaming"] as const) {
        const got = await scoreLoglikelihoods(emulator, requests, { residency });
        got.forEach((g, k) => expect(Math.abs(g.logprob - reference[k]), `${residency} request ${k}`).toBeLessThan(1e-3));
      }
    } finally {
      await emulator.close();
    }
  });

  test("ratio 1 keeps every block, needs no blockIndices and reproduces the original logits", async () => {
    const out = join(root, "whole");
    await lastValueFrom(buildLayerDropEmulator(model, { ratio: 1, out }).pipe(toArray()));
    const manifest = await readManifest(out);
    expect(manifest.blockIndices).toBeUndefined();
    expect(manifest.settings).toEqual({ ratio: 1, keptMiddle: [2, 3, 4, 5, 6, 7, 8, 9] });
    const emulator = await openPackage(out);
    try {
      const diff = maxAbsDiff(await packageLogits(emulator), await handForward([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
      console.log(`ratio-1 layerdrop logits vs original: max abs diff ${diff.toExponential(2)} (allowed 1e-5)`);
      expect(diff).toBeLessThan(1e-5);
    } finally {
      await emulator.close();
    }
  });
});

describe("packages that drop blocks are checked", () => {
  test("writeShards refuses blocks other than the ones the emulator runs", async () => {
    const out = join(root, "mismatch");
    const written = readCheckpoint(model).pipe(
      dropBlocks([0, 1, 10, 11]),
      writeShards(out, { method: "test", settings: {}, blockIndices: [0, 1, 2, 10, 11] }),
    );
    await expect(lastValueFrom(written)).rejects.toThrow(
      `writeShards: emulator "${out}" got blocks 0, 1, 10, 11 but runs 0, 1, 2, 10, 11`,
    );
    expect(await exists(out)).toBe(false);
  });

  test("openPackage refuses an emulator that dropped an adapter block", async () => {
    const out = join(root, "no-adapter");
    const kept = [0, 2, 3, 10, 11];
    await lastValueFrom(readCheckpoint(model).pipe(dropBlocks(kept), writeShards(out, { method: "test", settings: {}, blockIndices: kept })));
    await expect(openPackage(out)).rejects.toThrow(`Package "${out}" drops adapter block 1 (split 2+2)`);
  });
});
