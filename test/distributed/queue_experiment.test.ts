// experiment --queue (docs/DISTRIBUTED.md "Many machines"): the same
// experiment on fixtures/tiny run here and as jobs of two `offtune worker`
// processes on a real redis-server writes the same result.json (but for the
// measured build time), every step having run on a worker. Skipped only where
// redis-server is not installed (CI installs it).
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readRunResult, runExperiment } from "../../mod.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { claims, hasRedis, startRedis, startWorker, stopAll } from "./redis_fixture.ts";

const HAS_REDIS = hasRedis("queue_experiment.test.ts");

describe.skipIf(!HAS_REDIS)("experiment --queue on redis-server", () => {
  let root: string;
  let redis: ChildProcess;
  let url: string;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "offtune-queue-experiment-"));
    ({ redis, url } = await startRedis());
  });
  afterAll(async () => {
    stopAll(workers, redis);
    if (root) await rm(root, { recursive: true, force: true });
  });

  test("writes the result.json of a local run, each step run by a worker", async () => {
    const pplData = join(root, "valid-4096.bin"); // 4096 Uint16 token ids
    await writeFile(pplData, (await readFile("fixtures/data/pretrain/valid.bin")).subarray(0, 8192));
    const argv = (runs: string, ...extra: string[]) => [
      "--model", "fixtures/tiny", "--runs", runs, "--split", "1,1", "--tasks", "lastword_cloze", "--seeds", "0", "--no-full-ft",
      "--train-limit", "8", "--eval-limit", "8", "--epochs", "1", "--sequences", "8", "--ppl-data", pplData, "--quiet", ...extra,
    ];
    const storage = root;
    workers.push(await startWorker(url, storage), await startWorker(url, storage));
    const [local, queued] = await Promise.all([
      runExperiment(await experimentOptions(argv(join(root, "local"), "--jobs", "2"))),
      runExperiment(await experimentOptions(argv(join(root, "queued"), "--queue", url, "--jobs", "8"))),
    ]);
    const { emulator_build_s: localBuild, ...want } = await readRunResult(local[0]);
    const { emulator_build_s: queuedBuild, ...got } = await readRunResult(queued[0]);
    expect(got).toEqual(want);
    expect(localBuild).toBeGreaterThan(0);
    expect(queuedBuild).toBeGreaterThan(0);
    // build, Full ZS, Emulator ZS, tune, Emulator FT, plug-in: six jobs, each claimed once by one of the workers.
    const claimed = await claims(storage);
    expect(claimed).toHaveLength(6);
    expect(new Set(claimed.map((c) => c.job)).size).toBe(6);
    for (const c of claimed) expect(workers.map((w) => w.pid)).toContain(c.pid);
    expect((await readdir(join(root, "queued", "_work", "logs"))).sort()).toEqual((await readdir(join(root, "local", "_work", "logs"))).sort());
  }, 240_000);
});
