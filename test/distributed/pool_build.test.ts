// A GradOT build on a pool of calibration workers (docs/DISTRIBUTED.md "All
// cores of one machine"): the chunks of the forward, the head and the
// backward, and the middle blocks' scoring and compression, run on worker
// threads, yet the shards are the bytes of the one-thread build for any
// worker count, with small chunks so that every block has several chunks
// (and a head chunk size that is not the block chunk size).
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadCalibration } from "../../src/loop/build_emulator.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { buildGradotEmulator } from "../../src/operators/gradot.ts";
import type { CalibrationSet, ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import { CalibrationPool, StartingPool } from "../../src/distributed/calibration_pool.ts";
import { CalibrationThreads } from "../../src/distributed/calibration_threads.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { BlockPace, calibrateForward } from "../../src/operators/calibrate_forward.ts";
import { calibrateBackward } from "../../src/operators/calibrate_backward.ts";
import { accumulateKfac } from "../../src/operators/accumulate_kfac.ts";
import { poolKfac } from "../../src/operators/pool_kfac.ts";
import { disposeWeights } from "../../src/model/weights.ts";

const CALIBRATION = "fixtures/data/pretrain/calibration.bin";

/** Every shard file of a package, by name, as bytes. */
async function shardBytes(dir: string): Promise<Map<string, Buffer>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".arrow")).sort();
  return new Map(await Promise.all(files.map(async (f) => [f, await readFile(join(dir, f))] as const)));
}

/** The manifest without its creation time. */
async function manifestOf(dir: string): Promise<Record<string, unknown>> {
  const { createdAt: _, ...rest } = (await readManifest(dir)) as unknown as Record<string, unknown>;
  return rest;
}

describe("build-emulator on a worker pool", () => {
  let dir: string;
  let model: ModelHandle;
  let streamed: ModelHandle; // the head streamed from the checkpoint, as the CLI opens it
  let calibration: CalibrationSet;

  beforeAll(async () => {
    await initBackend("wasm", true);
    dir = await mkdtemp(join(tmpdir(), "offtune-pool-"));
    model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
    streamed = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 }, streamVocabulary: true });
    calibration = await loadCalibration(CALIBRATION, model, { sequences: 7, length: 16, quiet: true });
  });

  afterAll(async () => {
    await model?.close();
    await streamed?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test.each([
    { vocabulary: "held", counts: [2, 3] },
    { vocabulary: "streamed", counts: [2] },
    { vocabulary: "streamed", counts: [2], ahead: true },
  ])("the shards and manifest of 1 and $counts workers are the same bytes (vocabulary $vocabulary, threads started ahead: $ahead)", async ({ vocabulary, counts, ahead }) => {
    const before = tf.memory().numTensors;
    const build = async (workers: number) => {
      const out = join(dir, `${vocabulary}-w${workers}${ahead ? "-ahead" : ""}`);
      const marks: string[] = []; // progress marks, "stage block"
      const next = (e: StageEvent) => e.unit === "steps" && marks.push(`${e.stage} ${e.block}`);
      const threads = ahead && workers > 1 ? new CalibrationThreads(workers) : undefined; // as build-emulator starts them
      try {
        const options = { calibration, out, chunk: 2, workers, events: { next }, ...(threads ? { threads } : {}) };
        const shards = await lastValueFrom(buildGradotEmulator(vocabulary === "held" ? model : streamed, options).pipe(toArray()));
        if (threads) expect((await threads.workers).leastBusy()).toBeUndefined(); // the build ran on them and closed them with its pool
        return { out, shards, marks };
      } finally {
        await threads?.close();
      }
    };
    const one = await build(1);
    for (const workers of counts) {
      const many = await build(workers);
      expect(many.shards.map((s) => s.index)).toEqual(one.shards.map((s) => s.index));
      expect(await shardBytes(many.out)).toEqual(await shardBytes(one.out));
      expect(await manifestOf(many.out)).toEqual(await manifestOf(one.out));
      // Every block passes every stage once; with workers, scoring overlaps the backward of the next blocks.
      expect([...many.marks].sort()).toEqual([...one.marks].sort());
      expect(many.marks.filter((m) => m.startsWith("compress"))).toEqual(one.marks.filter((m) => m.startsWith("compress")));
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test("with the pool started first, every block's forward, the head and the backward run on it and give the same KFAC factors and channel products", async () => {
    const pool = new StartingPool(streamed, 2);
    await pool.started; // every chunk on the workers, none in this thread
    const statistics = async (starting?: StartingPool, linearOutputs = false, kfacOnPool = false) => {
      const pace = starting ? new BlockPace() : undefined;
      const records = await lastValueFrom(
        readCheckpoint(streamed, undefined, undefined, pace?.next).pipe(
          calibrateForward({ calibration, chunk: 2, pool: starting, pace, linearOutputs }),
          calibrateBackward({ chunk: 2, headChunk: 3, pool: starting }),
          starting && kfacOnPool ? poolKfac({ pool: starting, tokens: calibration.sequences * (calibration.length - 1) }) : accumulateKfac(),
          toArray(),
        ),
      );
      return records.map((r) => {
        disposeWeights(r.weights);
        const factors = [...r.stats].map(([name, f]) => [name, f.A.held, f.G.held, f.g, f.tokens]);
        return { index: r.index, factors, channels: r.channelProducts };
      });
    };
    try {
      const inThread = await statistics();
      expect(inThread.filter((r) => r.factors.length > 0).map((r) => r.index)).toEqual([2, 1]);
      expect(inThread.filter((r) => r.channels).map((r) => r.index)).toEqual([2, 1]); // OPT's ReLU MLP
      expect(await statistics(pool)).toEqual(inThread);
      // The workers' backward replaying the workers' stored linear outputs: the same factors.
      expect(await statistics(pool, true)).toEqual(inThread);
      // Each linear's sums on its owning worker (poolKfac): the same factors, in the same linear order.
      const owned = await statistics(pool, true, true);
      expect(owned).toEqual(inThread);
      expect(owned.map((r) => r.factors.map(([name]) => name))).toEqual(inThread.map((r) => r.factors.map(([name]) => name)));
    } finally {
      await pool.close();
    }
  });

  test("on the pool the forward stores the same linear outputs as in this thread, for the blocks the backward runs", async () => {
    const pool = new StartingPool(streamed, 2);
    await pool.started;
    const linearOutputs = async (starting?: StartingPool) => {
      const pace = starting ? new BlockPace() : undefined;
      const records = await lastValueFrom(
        readCheckpoint(streamed, undefined, undefined, pace?.next).pipe(
          calibrateForward({ calibration, chunk: 2, pool: starting, pace, linearOutputs: true }),
          toArray(),
        ),
      );
      try {
        return records.map((r) => ({
          index: r.index,
          outputs: [...(r.linearOutputs ?? [])].map(([name, a]) => [name, a.width, Buffer.from(a.read(0, a.sequences).buffer)]),
        }));
      } finally {
        records[0].store.close();
      }
    };
    try {
      const inThread = await linearOutputs();
      // Blocks 1..3 (split bottom 1): q, k, v, o, fc1, fc2 each.
      expect(inThread.filter((r) => r.outputs.length > 0).map((r) => r.index)).toEqual([1, 2, 3]);
      expect(inThread[1].outputs.map(([, width]) => width)).toEqual([64, 64, 64, 64, 256, 64]);
      expect(await linearOutputs(pool)).toEqual(inThread);
    } finally {
      await pool.close();
    }
  });

  test("on the pool a block's chunk starts once its input chunk is written, while the block below still runs, and the stored activations are this thread's", async () => {
    const pool = new StartingPool(model, 2);
    const started = await pool.started;
    /** The activations the forward stores (each block's input, the last output), by block, as bytes. */
    const activations = async (starting?: StartingPool) => {
      const pace = starting ? new BlockPace() : undefined;
      const records = await lastValueFrom(
        readCheckpoint(model, undefined, undefined, pace?.next).pipe(calibrateForward({ calibration, chunk: 2, pool: starting, pace }), toArray()),
      );
      try {
        return records.map((r) => [r.input, r.output].map((a) => a && Buffer.from(a.read(0, a.sequences).buffer)));
      } finally {
        records[0].store.close();
      }
    };
    // Each chunk request's block (publication id), chunk start (byte) and times; the first block's last chunk is held up.
    const calls: Array<{ block: number; at: number; start: number; end: number }> = [];
    const forward = started.forward.bind(started);
    let first: number | undefined;
    started.forward = async (block, x, n, t, linears, targets) => {
      first ??= block.id;
      const call = { block: block.id, at: x.position, start: performance.now(), end: Infinity };
      calls.push(call);
      if (block.id === first && x.position > 0 && n === 1) await new Promise((wait) => setTimeout(wait, 300)); // [6, 7): the last chunk
      await forward(block, x, n, t, linears, targets);
      call.end = performance.now();
    };
    try {
      const inThread = await activations();
      expect(await activations(pool)).toEqual(inThread);
      const held = calls.find((c) => c.block === first && c.at > 0 && calls.filter((d) => d.block === first).at(-1) === c)!;
      const next = calls.filter((c) => c.block === first! + 1);
      expect(next).toHaveLength(4); // chunks [0, 2), [2, 4), [4, 6), [6, 7)
      // Three chunks of the next block ran while the held-up chunk of the block below was still running.
      expect(next.filter((c) => c.end < held.end)).toHaveLength(3);
    } finally {
      await pool.close();
    }
  });

  test("a pool is not readied on threads started for another size", async () => {
    const threads = new CalibrationThreads(2);
    try {
      await expect(CalibrationPool.start(streamed, 3, threads)).rejects.toThrow(/A calibration pool of 3 slots was handed threads started for 2/);
    } finally {
      await threads.close();
    }
  });

  test("workers must be a positive integer", () => {
    expect(() => buildGradotEmulator(model, { calibration, out: join(dir, "bad"), workers: 0 })).toThrow(/workers must be a positive integer, got 0/);
  });
});
