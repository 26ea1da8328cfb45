// The operator contract (src/operators/): every operator keeps its state per
// subscription, so subscribing twice to the same piped observable — one after
// the other, or both at once — gives each subscription the result a single
// one gets. One test per stateful operator (accumulateKfac, calibrateForward,
// calibrateBackward, writeShards) and per composed build (its progress count).
import { asapScheduler, concatMap, from, lastValueFrom, type Observable, observeOn, of, toArray } from "rxjs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import type { LinearSpec } from "../../src/model/types.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { disposeWeights } from "../../src/model/weights.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { calibrateForward } from "../../src/operators/calibrate_forward.ts";
import { calibrateBackward } from "../../src/operators/calibrate_backward.ts";
import { accumulateKfac } from "../../src/operators/accumulate_kfac.ts";
import { buildGradotEmulator } from "../../src/operators/gradot.ts";
import { buildLayerDropEmulator } from "../../src/operators/layer_drop.ts";
import { writeShards } from "../../src/operators/write_shards.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import type { CalibrationEvent, ModelHandle, StatsRecord } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { calibrationFor, factorNumbers } from "./calibration_fixture.ts";

const FIXTURE = "fixtures/golden/opt"; // OPT, 2 blocks

let dir: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-resubscribe-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Subscribes to `stream` twice, first one after the other, then both at once. */
async function twice<T>(stream: Observable<T>): Promise<{ sequential: [T, T]; concurrent: [T, T] }> {
  const first = await lastValueFrom(stream);
  const second = await lastValueFrom(stream);
  const concurrent = await Promise.all([lastValueFrom(stream), lastValueFrom(stream)]);
  return { sequential: [first, second], concurrent };
}

/** A deterministic `[rows, cols]` matrix. */
function matrix(rows: number, cols: number, seed: number): Matrix {
  return { rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(seed + 0.37 * i)) };
}

/** The factors and channel products of `records` as plain numbers, comparable with toEqual. */
function factorsOf(records: StatsRecord[]) {
  return records.map((r) => ({
    index: r.index,
    stats: [...r.stats].map(([name, f]) => ({ name, tokens: f.tokens, A: factorNumbers(f.A), G: factorNumbers(f.G), g: f.g && [...f.g.data] })),
    channels: r.channelProducts && { tokens: r.channelProducts.tokens, mean: [...r.channelProducts.mean] },
  }));
}

describe("the operator contract: state per subscription", () => {
  test("accumulateKfac counts every token once per subscription", async () => {
    const q: LinearSpec = { name: "q", role: "attn.q", inFeatures: 3, outFeatures: 2, hasBias: false };
    const model = {} as ModelHandle; // accumulateKfac only passes the model on
    const events: CalibrationEvent[] = [];
    for (const index of [1, 0]) {
      for (let chunk = 0; chunk < 3; chunk++) {
        events.push({ kind: "chunk", index, linear: q, x: matrix(4, 3, 10 * index + chunk), gamma: matrix(4, 2, 5 + chunk), gradScale: 1 });
      }
      events.push({ kind: "block", model, index, role: "middle", weights: new Map() });
    }
    // each event delivered in its own task: two live subscriptions interleave event by event
    const stream = from(events).pipe(concatMap((e) => of(e).pipe(observeOn(asapScheduler))), accumulateKfac(), toArray());
    const { sequential, concurrent } = await twice(stream);
    const expected = factorsOf(sequential[0]);
    expect(expected.map((r) => r.stats[0].tokens)).toEqual([12, 12]); // 3 chunks of 4 tokens per block
    for (const run of [sequential[1], ...concurrent]) expect(factorsOf(run)).toEqual(expected);
  });

  test("calibrateForward, calibrateBackward and accumulateKfac: a second subscription gets the first one's factors", async () => {
    const model = await openModel(FIXTURE, { split: { bottom: 0, top: 1 } });
    try {
      const calibration = calibrationFor(model.cfg.vocabSize, 3, 12);
      const stream = readCheckpoint(model).pipe(
        calibrateForward({ calibration, chunk: 2 }), // each subscription its own activation store
        calibrateBackward({ chunk: 2 }),
        accumulateKfac(),
        toArray(),
      );
      const { sequential, concurrent } = await twice(stream);
      const expected = factorsOf(sequential[0]);
      expect(expected.find((r) => r.index === 0)!.stats.length).toBeGreaterThan(0); // block 0 is a middle block
      expect(expected.find((r) => r.index === 0)!.channels?.tokens).toBe(3 * 11); // its ReLU MLP's channel products
      for (const run of [sequential[1], ...concurrent]) expect(factorsOf(run)).toEqual(expected);
      for (const run of [...sequential, ...concurrent]) for (const r of run) disposeWeights(r.weights);
    } finally {
      await model.close();
    }
  });

  test("writeShards writes the same package on every subscription", async () => {
    const model = await openModel(FIXTURE, { split: { bottom: 0, top: 1 } });
    try {
      const out = join(dir, "copy");
      const stream = readCheckpoint(model).pipe(
        writeShards(out, { method: "copy", settings: {} }),
        toArray(),
      );
      const first = await lastValueFrom(stream);
      const second = await lastValueFrom(stream);
      expect(first.map((s) => String(s.block)).sort()).toEqual(["0", "1", "outer"]);
      expect(second).toEqual(first); // same files, same hashes: nothing left over from the first writer
    } finally {
      await model.close();
    }
  });

  test("a GradOT build counts its progress per subscription", async () => {
    const model = await openModel(FIXTURE, { split: { bottom: 0, top: 1 } });
    try {
      const calibration = calibrationFor(model.cfg.vocabSize, 2, 12);
      const seen: StageEvent[] = [];
      const build = buildGradotEmulator(model, {
        calibration,
        out: join(dir, "gradot"),
        ratio: 0.5,
        events: { next: (e) => void seen.push(e) },
      }).pipe(toArray());
      const marks = () => seen.filter((e) => e.done !== undefined).map((e) => `${e.done}/${e.total}`);
      const first = await lastValueFrom(build);
      const firstMarks = marks();
      expect(firstMarks).toEqual(["1/8", "2/8", "3/8", "4/8", "5/8", "6/8", "7/8", "8/8"]);
      expect(seen.some((e) => e.stage === "head" && e.loss! > 0)).toBe(true);
      expect(seen.filter((e) => e.stage === "svd").every((e) => e.block === 0 && e.seconds >= 0)).toBe(true);
      seen.length = 0;
      const second = await lastValueFrom(build);
      expect(marks()).toEqual(firstMarks);
      expect(second.map((s) => s.sha256)).toEqual(first.map((s) => s.sha256));
    } finally {
      await model.close();
    }
  });

  test("a LayerDrop build counts its shards per subscription", async () => {
    const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
    try {
      const marks: string[] = [];
      const build = buildLayerDropEmulator(model, {
        ratio: 0.5,
        out: join(dir, "layerdrop"),
        events: { next: (e) => void (e.done !== undefined && marks.push(`${e.done}/${e.total}`)) },
      }).pipe(toArray());
      await lastValueFrom(build);
      const once = [...marks];
      expect(once.at(-1)).toBe(`${once.length}/${once.length}`);
      marks.length = 0;
      await lastValueFrom(build);
      expect(marks).toEqual(once);
    } finally {
      await model.close();
    }
  });
});
