// build-emulator --queue runs the GradOT calibration as slice jobs
// (docs/DISTRIBUTED.md "Calibration slices"): on fixtures/tiny with 192 x 64
// tokens, three slices of 64 sequences run on two `offtune worker` processes
// of a real redis-server, and the building process only sums their files;
// the shards are the bytes of a one-process build. Then a worker is
// SIGKILLed (with its verb) in the middle of a slice job, after the slice's
// head and before its last block: the job is run again by the other worker
// and the shards are still the one-process build's. The shards depend on the
// KFAC factors only through GCS's choices, so the factors and the loss that
// `queuedCalibration` gives are also compared, byte for byte, with one
// process's `accumulateKfac`. Skipped only where
// redis-server is not installed (CI installs it).
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, type Observable, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { JobSubmitter } from "../../src/distributed/job_queue.ts";
import { jobPackr, statsValue } from "../../src/distributed/block_files.ts";
import { sliceLossFile } from "../../src/distributed/slice_files.ts";
import { loadCalibration } from "../../src/loop/build_emulator.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { buildGradotEmulator } from "../../src/operators/gradot.ts";
import { accumulateKfac } from "../../src/operators/accumulate_kfac.ts";
import { calibrateBackward } from "../../src/operators/calibrate_backward.ts";
import { calibrateForward } from "../../src/operators/calibrate_forward.ts";
import { queuedCalibration } from "../../src/operators/queued_calibration.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { disposeWeights } from "../../src/model/weights.ts";
import type { StatsRecord } from "../../src/records/records.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { spawnCli } from "../pipelines/spawn_cli.ts";
import { type Claim, claims, expectRetriedByTheOther, expectSamePackage, hasRedis, killFirstClaim, startRedis, startWorker, stopAll } from "./redis_fixture.ts";

const HAS_REDIS = hasRedis("queue_calibration.test.ts");

const CALIBRATION = "fixtures/data/pretrain/calibration.bin";
// 192 sequences of 64 tokens: block chunks of 8 sequences, head chunks of 64
// (4,096 tokens, the vocabulary streamed): three slices of 64.
const SEQUENCES = 192;
const LENGTH = 64;
const SLICES = 3;

/** The `--out` of a claim's command line. */
const outOf = (claim: Claim) => {
  const args = claim.command.split(" ");
  return args[args.indexOf("--out") + 1];
};

describe.skipIf(!HAS_REDIS)("build-emulator --queue: the calibration as slice jobs", () => {
  let dir: string;
  let redis: ChildProcess;
  let url: string;
  let reference: string;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    await initBackend("wasm", true);
    dir = await mkdtemp(join(tmpdir(), "offtune-queue-calibration-"));
    ({ redis, url } = await startRedis());
    const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 }, streamVocabulary: true });
    try {
      reference = join(dir, "one-process");
      const calibration = await loadCalibration(CALIBRATION, model, { sequences: SEQUENCES, length: LENGTH, quiet: true });
      await lastValueFrom(buildGradotEmulator(model, { calibration, out: reference }).pipe(toArray()));
    } finally {
      await model.close();
    }
  }, 60_000);

  test("the building process SIGKILLed once two shards are written, run again, continues from the slices' files to the same bytes", async () => {
    const storage = join(dir, "shared-4");
    await twoWorkers(storage);
    const { out, build } = spawnBuild("queued-resumed", storage);
    /** Shards the resumable build has written, by its progress.json. */
    const written = async () => {
      const partial = (await readdir(dir)).find((n) => n.startsWith("queued-resumed.partial-"));
      const progress = partial && (await readFile(join(dir, partial, "progress.json"), "utf8").catch(() => undefined));
      return progress ? (JSON.parse(progress).blocks as unknown[]).length : 0;
    };
    while ((await written()) < 2 && build.child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    build.child.kill("SIGKILL");
    expect((await build.exited).signal, build.stderr()).toBe("SIGKILL");
    expect(existsSync(out)).toBe(false); // killed mid-build: blocks 3 and 2 written, 1 and 0 not

    const sliceClaims = async () => (await claims(storage)).filter((c) => c.command.startsWith("gradot-slice "));
    const beforeRerun = (await sliceClaims()).length; // ≥ SLICES: a job whose lock lapsed on a loaded machine runs twice
    const again = await queuedBuild("queued-resumed", storage);
    expect(again.code, again.stderr).toBe(0);
    await expectSamePackage(reference, out);
    // The unwritten blocks' slice files were kept for the rerun: it ran no slice job, and every slice ran before it.
    const slices = await sliceClaims();
    expect(slices).toHaveLength(beforeRerun);
    expect(new Set(slices.map((c) => c.job)).size).toBe(SLICES);
    expect(await readdir(join(storage, "slices"))).toEqual([]);
  }, 120_000);

  test("queuedCalibration gives one process's KFAC factors, channel products and loss, byte for byte, block by block; kept files are reused", async () => {
    const storage = join(dir, "shared-3");
    await twoWorkers(storage);
    const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 }, streamVocabulary: true });
    const submitter = await JobSubmitter.open(url);
    try {
      const calibration = await loadCalibration(CALIBRATION, model, { sequences: SEQUENCES, length: LENGTH, quiet: true });
      /** Each record's index, role, linear names, whether it has channel products, and its packed factors (as held, in linear order) and channel products. */
      const statistics = async (stats: Observable<StatsRecord>) =>
        (await lastValueFrom(stats.pipe(toArray()))).map((r) => {
          disposeWeights(r.weights);
          const bytes = Buffer.from(jobPackr.pack({ stats: statsValue(r.stats), channels: r.channelProducts ?? null }));
          return { index: r.index, role: r.role, names: [...r.stats.keys()], channels: r.channelProducts !== undefined, bytes };
        });
      const events = (losses: number[]) => ({ next: (e: StageEvent) => e.stage === "head" && losses.push(e.loss!) });
      const oneLosses: number[] = [];
      const one = await statistics(readCheckpoint(model).pipe(
        calibrateForward({ calibration, linearOutputs: true }),
        calibrateBackward({ events: events(oneLosses) }),
        accumulateKfac(),
      ));
      // Twice, the files kept: the second run reuses the slice jobs' files.
      let afterFirst = 0; // slice claims of the first run (≥ SLICES: a job whose lock lapsed on a loaded machine runs twice)
      for (const run of [1, 2]) {
        const queuedLosses: number[] = [];
        const queued = await statistics(queuedCalibration(model, { submitter, storage, out: join(dir, "factors"), calibration, events: events(queuedLosses), keepFiles: true }));
        expect(queued.map((b) => [b.index, b.role, b.names])).toEqual(one.map((b) => [b.index, b.role, b.names]));
        expect(queued.filter((b) => b.names.length > 0).map((b) => b.index)).toEqual([2, 1]);
        expect(queued.filter((b) => b.channels).map((b) => b.index)).toEqual([2, 1]); // OPT's ReLU MLP
        for (const [k, block] of one.entries()) expect(queued[k].bytes.equals(block.bytes), `run ${run}, block ${block.index}`).toBe(true);
        expect(queuedLosses).toHaveLength(1);
        expect(Object.is(queuedLosses[0], oneLosses[0])).toBe(true);
        const slices = (await claims(storage)).filter((c) => c.command.startsWith("gradot-slice "));
        expect(new Set(slices.map((c) => c.job)).size).toBe(SLICES);
        if (run === 1) afterFirst = slices.length;
        else expect(slices).toHaveLength(afterFirst); // the second run ran no slice job
      }
      expect((await readdir(join(storage, "slices"))).filter((n) => n.endsWith(".slice"))).toHaveLength(SLICES);
    } finally {
      await submitter.close();
      await model.close();
    }
  }, 120_000);

  afterAll(async () => {
    stopAll(workers, redis);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Two fresh workers on `storage` (the earlier tests' are killed: their claims go elsewhere). */
  async function twoWorkers(storage: string): Promise<ChildProcess[]> {
    stopAll(workers.splice(0), undefined);
    await mkdir(storage);
    const pair = [await startWorker(url, storage), await startWorker(url, storage)];
    workers.push(...pair);
    return pair;
  }

  /** `build-emulator --queue` of the reference's settings into `<dir>/<name>`, running. */
  function spawnBuild(name: string, storage: string) {
    const out = join(dir, name);
    const timings = join(dir, `${name}.json`);
    const build = spawnCli([
      "build-emulator", "--model", "fixtures/tiny", "--split", "1,1", "--calibration", CALIBRATION,
      "--sequences", String(SEQUENCES), "--length", String(LENGTH), "--out", out, "--timings", timings,
      "--queue", url, "--storage", storage, "--quiet",
    ]);
    return { out, build, timings: () => readFile(timings, "utf8").then(JSON.parse) };
  }

  /** {@link spawnBuild} run to its end: its exit status and stderr too. */
  async function queuedBuild(name: string, storage: string) {
    const { out, build, timings } = spawnBuild(name, storage);
    const { code } = await build.exited;
    return { out, code, stderr: build.stderr(), timings };
  }

  test("three slices run on two workers and the shards are a one-process build's bytes", async () => {
    const storage = join(dir, "shared-1");
    const pair = await twoWorkers(storage);
    const build = await queuedBuild("queued", storage);
    expect(build.code, build.stderr).toBe(0);

    await expectSamePackage(reference, build.out);
    // Every slice ran on the workers, both of them busy (once each, but for a job whose lock lapsed on a loaded machine).
    const slices = (await claims(storage)).filter((c) => c.command.startsWith("gradot-slice "));
    expect(new Set(slices.map((c) => c.job)).size).toBe(SLICES);
    expect(new Set(slices.map((c) => c.pid))).toEqual(new Set(pair.map((w) => w.pid)));
    // The building process ran no calibration pass: it read blocks and files and summed KFAC.
    const { stages } = await build.timings();
    expect(stages.kfac).toBeGreaterThan(0);
    expect(stages.forward).toBeUndefined();
    expect(stages.backward).toBeUndefined();
    // The slice files were deleted once read.
    expect(await readdir(join(storage, "slices"))).toEqual([]);
  }, 120_000);

  test("a slice job whose worker is SIGKILLed mid-slice is run again by the other worker, and the shards are the same bytes", async () => {
    const storage = join(dir, "shared-2");
    const pair = await twoWorkers(storage);
    // Kill the first worker whose slice job has run its head (its loss is written) and not finished.
    const watcher = killFirstClaim(storage, (c) => c.command.startsWith("gradot-slice ") && existsSync(sliceLossFile(outOf(c))));
    const build = await queuedBuild("queued-killed", storage);
    const killed = await watcher.stop();
    expect(build.code, build.stderr).toBe(0);

    await expectRetriedByTheOther(killed, pair, storage, url);
    await expectSamePackage(reference, build.out);
    expect(await readdir(join(storage, "slices"))).toEqual([]);
  }, 120_000);
});
