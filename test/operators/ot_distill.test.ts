// The OT distilled emulator (docs/METHOD.md §3, "OT (LayerDrop +
// distillation)") on fixtures/tiny (4 blocks; split 1+1 leaves the middle
// blocks 1 and 2, ratio 0.5 keeps block 1): LayerDrop's blocks, a falling
// loss, frozen parts copied bit for bit, a lower calibration MSE than plain
// LayerDrop, a killed run resumed bit for bit, and the settings' checks.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readCalibrationTokens } from "../../src/loop/build_emulator.ts";
import { calibrationFromTokens } from "../../src/data/calibration.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openPackage } from "../../src/model/open_package.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { layerDropBlocks } from "../../src/operators/layer_drop.ts";
import {
  buildOtDistillEmulator,
  calibrationMse,
  distillBatchIds,
  OT_DISTILL_METHOD,
  otDistillSettings,
  otDistillStatePath,
} from "../../src/operators/ot_distill.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import type { CalibrationSet, ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { releaseBlocks, residentModel } from "../../src/train/tune.ts";

const TINY = "fixtures/tiny";
const SPLIT = { bottom: 1, top: 1 };
const SETTINGS = { steps: 12, batch: 4, lr: 1e-3, mseWeight: 100, seed: 7 };

let root: string;
let model: ModelHandle;
let calibration: CalibrationSet;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-ot-distill-"));
  model = await openModel(TINY, { split: SPLIT });
  const tokens = await readCalibrationTokens("fixtures/data/pretrain/calibration.bin", TINY, model.cfg, true);
  calibration = calibrationFromTokens(tokens, 8, 32, "calibration");
});
afterAll(async () => {
  await model.close();
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);

async function build(out: string, extra: { signal?: AbortSignal; events?: { next(e: StageEvent): void } } = {}) {
  return await lastValueFrom(buildOtDistillEmulator(model, { ...SETTINGS, ratio: 0.5, calibration, out, saveEvery: 5, ...extra }).pipe(toArray()));
}

/** Whether two weight maps hold the same names and bit-identical values. */
function sameWeights(a: WeightMap, b: WeightMap): boolean {
  return a.size === b.size && [...a].every(([name, t]) => {
    const [p, q] = [t.dataSync(), b.get(name)?.dataSync()];
    return q !== undefined && p.length === q.length && p.every((v, k) => Object.is(v, q[k]));
  });
}

describe("buildOtDistillEmulator on fixtures/tiny", () => {
  const out = () => join(root, "distilled");

  test("keeps LayerDrop's blocks, records the run, and the loss falls", async () => {
    const losses: number[] = [];
    await lastValueFrom(buildOtDistillEmulator(model, {
      ...SETTINGS,
      ratio: 0.5,
      calibration,
      out: out(),
      events: { next: (e) => e.stage === "tune" && losses.push(e.loss!) },
    }).pipe(toArray()));
    const pkg = await openPackage(out());
    try {
      expect(pkg.blockIndices).toEqual(layerDropBlocks(4, SPLIT, 0.5));
      expect(pkg.blockIndices).toEqual([0, 1, 3]);
      expect(pkg.manifest.method).toBe(OT_DISTILL_METHOD);
      expect(pkg.manifest.settings).toMatchObject({
        ratio: 0.5,
        keptMiddle: [1],
        distillation: SETTINGS,
        calibration: { sequences: 8, length: 32 },
      });
      const curve = pkg.manifest.extra!.distillation as Record<string, number>;
      expect(losses).toHaveLength(SETTINGS.steps);
      expect(curve.firstLoss).toBe(losses[0]);
      expect(curve.lastLoss).toBe(losses.at(-1));
      expect(curve.lastLoss).toBeLessThan(0.9 * curve.firstLoss);
      expect(curve.lastMse).toBeLessThan(0.5 * curve.firstMse);
      expect(await exists(otDistillStatePath(out()))).toBe(false);
    } finally {
      await pkg.close();
    }
  });

  test("embeddings, adapter blocks, final norm and head are the original's bit for bit; the kept middle block trained", async () => {
    const pkg = await openPackage(out());
    try {
      expect(sameWeights(pkg.outer, model.outer)).toBe(true);
      for (const i of [0, 3]) {
        const [a, b] = [await pkg.loadBlock(i), await model.loadBlock(i)];
        expect(sameWeights(a, b)).toBe(true);
        tf.dispose([...a.values(), ...b.values()]);
      }
      const [a, b] = [await pkg.loadBlock(1), await model.loadBlock(1)];
      expect(sameWeights(a, b)).toBe(false);
      tf.dispose([...a.values(), ...b.values()]);
    } finally {
      await pkg.close();
    }
  });

  test("its calibration MSE at the top adapter blocks is below plain LayerDrop's", async () => {
    const pkg = await openPackage(out());
    const original = await residentModel(model);
    const distilled = await Promise.all(pkg.blockIndices.map((i) => pkg.loadBlock(i)));
    try {
      const layerDrop = calibrationMse(original, [0, 1, 3].map((i) => original.blocks[i]), SPLIT, calibration);
      const ours = calibrationMse(original, distilled, SPLIT, calibration);
      const full = calibrationMse(original, original.blocks, SPLIT, calibration);
      expect(full).toBe(0);
      expect(ours).toBeLessThan(0.7 * layerDrop);
    } finally {
      for (const b of distilled) tf.dispose([...b.values()]);
      releaseBlocks(original);
      await pkg.close();
    }
  });

  test("a run interrupted after step 7 resumes from the state saved there and ends bit-identical to an uninterrupted one", async () => {
    const resumed = join(root, "resumed");
    const controller = new AbortController();
    const reason = new Error("interrupted");
    await expect(build(resumed, {
      signal: controller.signal,
      events: { next: (e) => e.stage === "tune" && e.done === 7 && controller.abort(reason) },
    })).rejects.toBe(reason);
    expect(await exists(resumed)).toBe(false);
    expect(await exists(otDistillStatePath(resumed))).toBe(true);
    const steps: number[] = [];
    await build(resumed, { events: { next: (e) => e.stage === "tune" && steps.push(e.done!) } });
    expect(steps).toEqual([8, 9, 10, 11, 12]); // the state saved at the interruption (after step 7) is where it continues
    const [a, b] = [await openPackage(resumed), await openPackage(out())];
    try {
      const [x, y] = [await a.loadBlock(1), await b.loadBlock(1)];
      expect(sameWeights(x, y)).toBe(true);
      tf.dispose([...x.values(), ...y.values()]);
      expect(a.manifest.settings).toEqual(b.manifest.settings);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("buildOtDistillEmulator refuses", () => {
  test("a model opened with a streamed vocabulary, naming it, before writing anything", async () => {
    const streamed = await openModel(TINY, { split: SPLIT, streamVocabulary: true });
    const out = join(root, "streamed");
    try {
      await expect(lastValueFrom(buildOtDistillEmulator(streamed, { ratio: 0.5, calibration, out }))).rejects.toThrow(
        `OT distillation trains through the embeddings and head, so it needs "${TINY}" opened without streamVocabulary`,
      );
      expect(await exists(out)).toBe(false);
    } finally {
      await streamed.close();
    }
  });
});

describe("distillation settings and batches", () => {
  test("bad values name their flag", () => {
    expect(() => otDistillSettings({ steps: 0 })).toThrow("--distill-steps must be a positive integer, got 0");
    expect(() => otDistillSettings({ batch: 1.5 })).toThrow("--distill-batch must be a positive integer, got 1.5");
    expect(() => otDistillSettings({ lr: -1 })).toThrow("--distill-lr must be a positive number, got -1");
    expect(() => otDistillSettings({ mseWeight: Number.NaN })).toThrow("--distill-mse-weight must be a non-negative number, got NaN");
    expect(otDistillSettings({ steps: undefined }).steps).toBe(48);
  });

  test("every epoch visits each sequence once, in a seeded order", () => {
    const cal = { ids: Int32Array.from({ length: 6 * 2 }, (_, i) => i), sequences: 6, length: 2 };
    const rows = (step: number) => Array.from(distillBatchIds(cal, step, 3, 1).filter((_, k) => k % 2 === 0), (v) => v / 2);
    expect([...rows(0), ...rows(1)].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...rows(2), ...rows(3)].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...rows(0), ...rows(1)]).not.toEqual([...rows(2), ...rows(3)]);
  });
});
