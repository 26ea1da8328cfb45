// Jobs of the queue are idempotent by content (docs/DISTRIBUTED.md "What is
// idempotent"), on a real redis-server with one `offtune worker`: the same job
// submitted twice at once runs once; submitted again once done, with its
// output there, it is reused; with its output gone, or its input changed, it
// runs again. A worker told SIGTERM while idle exits. Skipped only where
// redis-server is not installed (CI installs it).
import type { ChildProcess } from "node:child_process";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { JobSubmitter, verbJob } from "../../src/distributed/job_queue.ts";
import { claims, hasRedis, startRedis, startWorker, stopAll } from "./redis_fixture.ts";

const HAS_REDIS = hasRedis("queue_jobs.test.ts");

describe.skipIf(!HAS_REDIS)("queue jobs on redis-server", () => {
  let root: string;
  let redis: ChildProcess;
  let url: string;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "offtune-queue-jobs-"));
    ({ redis, url } = await startRedis());
  });
  afterAll(async () => {
    stopAll(workers, redis);
    if (root) await rm(root, { recursive: true, force: true });
  });

  test("a job runs once per content of its inputs while its output exists", async () => {
    workers.push(await startWorker(url, root));
    const model = join(root, "tiny");
    await cp("fixtures/tiny", model, { recursive: true });
    const out = join(root, "emulator");
    // OT LayerDrop copies blocks: a verb run of seconds that writes --out.
    const job = verbJob(["build-emulator", "--method", "layerdrop", "--model", model, "--split", "1,1", "--out", out, "--force", "--quiet"], join(root, "log"));
    const submitter = await JobSubmitter.open(url);
    try {
      await Promise.all([submitter.run(job), submitter.run(job)]);
      expect(existsSync(join(out, "manifest.msgpack"))).toBe(true);
      expect(await claims(root)).toHaveLength(1);
      await submitter.run(job); // done, output there: reused
      expect(await claims(root)).toHaveLength(1);
      await rm(out, { recursive: true });
      await submitter.run(job); // output gone: run again
      expect(existsSync(join(out, "manifest.msgpack"))).toBe(true);
      const reruns = await claims(root);
      expect(reruns).toHaveLength(2);
      expect(reruns[1].job).toBe(reruns[0].job);
      await writeFile(join(model, "generation_config.json"), "{}"); // another input: another job
      await submitter.run(job);
      const all = await claims(root);
      expect(all).toHaveLength(3);
      expect(new Set(all.map((c) => c.job)).size).toBe(2);
    } finally {
      await submitter.close();
    }
  }, 120_000);

  test("an idle worker told SIGTERM exits 0", async () => {
    const worker = await startWorker(url, root);
    workers.push(worker);
    const exited = new Promise<number | null>((resolve) => worker.once("exit", (code) => resolve(code)));
    worker.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 30_000);
});
