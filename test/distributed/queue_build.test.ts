// build-emulator --queue (docs/DISTRIBUTED.md "Many machines"): a GradOT build
// (the CLI) whose middle blocks are scored and compressed by two `offtune
// worker` processes on a real redis-server, one of them SIGKILLed (with its
// verb process) while it holds a block job. The job must be taken over by the
// other worker and the emulator's shards must be the bytes of a one-process
// build. (The calibration slices' jobs: queue_calibration.test.ts.)
// Skipped only where redis-server is not installed (CI installs it).
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadCalibration } from "../../src/loop/build_emulator.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { buildGradotEmulator } from "../../src/operators/gradot.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { spawnCli } from "../pipelines/spawn_cli.ts";
import { expectRetriedByTheOther, expectSamePackage, hasRedis, killFirstClaim, startRedis, startWorker, stopAll } from "./redis_fixture.ts";

const HAS_REDIS = hasRedis("queue_build.test.ts");

const SPLIT = { bottom: 1, top: 1 }; // fixtures/tiny has 4 blocks: 2 middle blocks, 2 jobs

describe.skipIf(!HAS_REDIS)("build-emulator --queue on redis-server", () => {
  let dir: string;
  let redis: ChildProcess;
  let url: string;
  let model: ModelHandle;
  const workers: ChildProcess[] = [];
  const CALIBRATION = "fixtures/data/pretrain/calibration.bin";

  beforeAll(async () => {
    await initBackend("wasm", true);
    dir = await mkdtemp(join(tmpdir(), "offtune-queue-"));
    ({ redis, url } = await startRedis());
    model = await openModel("fixtures/tiny", { split: SPLIT, streamVocabulary: true });
  });

  afterAll(async () => {
    stopAll(workers, redis);
    await model?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("a block job whose worker is SIGKILLed is finished by the other worker, and the shards are a one-process build's bytes", async () => {
    const reference = join(dir, "one-process");
    const calibration = await loadCalibration(CALIBRATION, model, { sequences: 4, length: 16, quiet: true });
    await lastValueFrom(buildGradotEmulator(model, { calibration, out: reference }).pipe(toArray()));

    const storage = join(dir, "shared");
    await mkdir(storage);
    workers.push(await startWorker(url, storage), await startWorker(url, storage));

    // Kill the first worker seen holding a block job, with its gradot-block process.
    const watcher = killFirstClaim(storage, (c) => c.command.startsWith("gradot-block "));
    const out = join(dir, "queued");
    const build = spawnCli([
      "build-emulator", "--model", "fixtures/tiny", "--split", "1,1", "--calibration", CALIBRATION, "--sequences", "4", "--length", "16",
      "--out", out, "--queue", url, "--storage", storage, "--quiet",
    ]);
    const { code } = await build.exited;
    const killed = await watcher.stop();
    expect(code, build.stderr()).toBe(0);

    // The killed worker's job was claimed again, by the survivor, and completed.
    const completed = await expectRetriedByTheOther(killed, workers, storage, url);
    expect(completed).toBe(3); // one per middle block, one calibration slice

    // The same shards, byte for byte, and the same manifest but for its creation time.
    await expectSamePackage(reference, out);
    // The block and slice files are removed once read back.
    expect(await readdir(join(storage, "blocks"))).toEqual([]);
    expect(await readdir(join(storage, "slices"))).toEqual([]);
  }, 90_000);
});
