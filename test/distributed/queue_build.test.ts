// build-emulator --queue (docs/DISTRIBUTED.md "Many machines"): a GradOT build
// (the CLI) whose middle blocks are scored and compressed by two `offtune
// worker` processes on a real redis-server, one of them SIGKILLed (with its
// verb process) while it holds a job. The job must be taken over by the other
// worker and the emulator's shards must be the bytes of a one-process build.
// Skipped only where redis-server is not installed (CI installs it).
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Queue } from "bullmq";
import { QUEUE_NAME, queueConnection } from "../../src/distributed/job_queue.ts";
import { loadCalibration } from "../../src/loop/build_emulator.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { buildGradotEmulator } from "../../src/operators/gradot.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { spawnCli } from "../pipelines/spawn_cli.ts";
import { claims, hasRedis, startRedis, startWorker, stopAll } from "./redis_fixture.ts";

const HAS_REDIS = hasRedis("queue_build.test.ts");

const SPLIT = { bottom: 1, top: 1 }; // fixtures/tiny has 4 blocks: 2 middle blocks, 2 jobs

/** Every shard file of a package, by name, as bytes. */
async function shardBytes(dir: string): Promise<Map<string, Buffer>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".arrow")).sort();
  return new Map(await Promise.all(files.map(async (f) => [f, await readFile(join(dir, f))] as const)));
}

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

  test("a job whose worker is SIGKILLed is finished by the other worker, and the shards are a one-process build's bytes", async () => {
    const reference = join(dir, "one-process");
    const calibration = await loadCalibration(CALIBRATION, model, { sequences: 4, length: 16, quiet: true });
    await lastValueFrom(buildGradotEmulator(model, { calibration, out: reference }).pipe(toArray()));

    const storage = join(dir, "shared");
    await mkdir(storage);
    workers.push(await startWorker(url, storage), await startWorker(url, storage));

    // Kill the first worker seen holding a job, with its gradot-block process.
    let killed: { job: string; pid: number } | undefined;
    let watching = true;
    const watcher = (async () => {
      while (watching && !killed) {
        const first = (await claims(storage))[0];
        if (first) {
          process.kill(-first.pid, "SIGKILL");
          killed = first;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const out = join(dir, "queued");
    const build = spawnCli([
      "build-emulator", "--model", "fixtures/tiny", "--split", "1,1", "--calibration", CALIBRATION, "--sequences", "4", "--length", "16",
      "--out", out, "--queue", url, "--storage", storage, "--quiet",
    ]);
    const { code } = await build.exited;
    watching = false;
    await watcher;
    expect(code, build.stderr()).toBe(0);

    expect(killed).toBeDefined();
    const victim = workers.find((w) => w.pid === killed!.pid)!;
    const survivor = workers.find((w) => w !== victim)!;
    // The killed worker's job was claimed again, by the survivor, and completed.
    const again = (await claims(storage)).filter((c) => c.job === killed!.job).map((c) => c.pid);
    expect(again.sort()).toEqual([victim.pid, survivor.pid].sort());
    const queue = new Queue(QUEUE_NAME, { connection: queueConnection(url) });
    try {
      const job = await queue.getJob(killed!.job);
      expect(await job!.getState()).toBe("completed");
      expect((await queue.getJobCounts("completed")).completed).toBe(2); // one job per middle block
    } finally {
      await queue.close();
    }

    // The same shards, byte for byte, and the same manifest but for its creation time.
    const [want, got] = [await shardBytes(reference), await shardBytes(out)];
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [file, bytes] of want) expect(got.get(file)!.equals(bytes), file).toBe(true);
    const { createdAt: _a, ...wantManifest } = await readManifest(reference);
    const { createdAt: _b, ...gotManifest } = await readManifest(out);
    expect(gotManifest).toEqual(wantManifest);
    // The block files are removed once read back.
    expect(await readdir(join(storage, "blocks"))).toEqual([]);
  }, 90_000);
});
