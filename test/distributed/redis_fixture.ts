// A redis-server and offtune workers for the queue tests (docs/DISTRIBUTED.md):
// each test file starts its own redis-server on a free port, without
// persistence, and stops it after.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createServer, Socket } from "node:net";
import process from "node:process";
import { Queue } from "bullmq";
import { expect } from "vitest";
import { QUEUE_NAME, queueConnection } from "../../src/distributed/job_queue.ts";
import { claimsDir } from "../../src/distributed/queue_worker.ts";
import { readManifest } from "../../src/io/manifest.ts";

/** A job's lock lifetime in the tests: a killed worker's job is taken over within about this. */
export const LOCK_MS = 2000;

/** Whether redis-server is installed; says why the file is skipped when not. */
export function hasRedis(file: string): boolean {
  const ok = spawnSync("redis-server", ["--version"]).status === 0;
  if (!ok) console.warn(`${file}: skipped: redis-server is not installed (apt-get install redis-server; CI installs it)`);
  return ok;
}

/** Starts a redis-server on a free port of 127.0.0.1 (no RDB, no AOF). */
export async function startRedis(): Promise<{ redis: ChildProcess; url: string }> {
  const port = await freePort();
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await waitForPort(port, "redis-server");
  return { redis, url: `redis://127.0.0.1:${port}` };
}

/** Kills the workers' process groups (with their verb processes) and stops redis. */
export function stopAll(workers: ChildProcess[], redis: ChildProcess | undefined): void {
  for (const w of workers) {
    try {
      process.kill(-w.pid!, "SIGKILL");
    } catch { /* already gone */ }
  }
  redis?.kill("SIGTERM");
}

/** A TCP port free right now on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port`. */
async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
      socket.connect(port, "127.0.0.1");
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on port ${port}`);
}

/** Starts `offtune worker` in its own process group (so the test can kill it with its verb processes). */
export function startWorker(url: string, storage: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "pipelines/offtune.ts", "worker", "--queue", url, "--storage", storage, "--lock-ms", String(LOCK_MS)],
    { detached: true, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, OFFTUNE_BACKEND: "wasm" } },
  );
  return new Promise((resolve, reject) => {
    let said = "";
    child.stderr!.on("data", (d: Buffer) => {
      said += d.toString();
      if (said.includes("worker: serving")) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`worker exited with ${code}: ${said}`)));
  });
}

/** A claim of a job run: the job's id, the pid of the worker that ran it and its command line (`offtune` args). */
export interface Claim {
  job: string;
  pid: number;
  command: string;
}

/** The claims in `storage`, one per job run, in no order. */
export async function claims(storage: string): Promise<Claim[]> {
  const dir = claimsDir(storage);
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.filter((n) => !n.includes(".tmp-")).map(async (n) => {
    const [job, , pid] = n.split("."); // <job id>.<time>.<pid>.<host>
    return { job, pid: Number(pid), command: await readFile(join(dir, n), "utf8") };
  }));
}

/**
 * Watches `storage`'s claims and SIGKILLs the process group (the worker with
 * its verb process) of the first claim `pick` accepts. `stop()` ends the
 * watch and resolves to the claim killed, if any.
 */
export function killFirstClaim(storage: string, pick: (claim: Claim) => boolean): { stop(): Promise<Claim | undefined> } {
  let killed: Claim | undefined;
  let watching = true;
  const watch = (async () => {
    while (watching && !killed) {
      const victim = (await claims(storage)).find(pick);
      if (victim) {
        process.kill(-victim.pid, "SIGKILL");
        killed = victim;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return {
    stop: async () => {
      watching = false;
      await watch;
      return killed;
    },
  };
}

/**
 * Expects `killed` (a {@link killFirstClaim} result) to be a claim of one of
 * the two `workers`, its job claimed again by the other and completed on the
 * queue at `url`; resolves with the queue's count of completed jobs.
 */
export async function expectRetriedByTheOther(killed: Claim | undefined, workers: ChildProcess[], storage: string, url: string): Promise<number> {
  expect(killed).toBeDefined();
  const victim = workers.find((w) => w.pid === killed!.pid)!;
  const survivor = workers.find((w) => w !== victim)!;
  const again = (await claims(storage)).filter((c) => c.job === killed!.job).map((c) => c.pid);
  expect(again.sort()).toEqual([victim.pid, survivor.pid].sort());
  const queue = new Queue(QUEUE_NAME, { connection: queueConnection(url) });
  try {
    expect(await (await queue.getJob(killed!.job))!.getState()).toBe("completed");
    return (await queue.getJobCounts("completed")).completed ?? 0;
  } finally {
    await queue.close();
  }
}

/** Every shard file of a package, by name, as bytes. */
export async function shardBytes(dir: string): Promise<Map<string, Buffer>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".arrow")).sort();
  return new Map(await Promise.all(files.map(async (f) => [f, await readFile(join(dir, f))] as const)));
}

/** Expects package `got` to hold `want`'s shards, byte for byte, and its manifest but for the creation time. */
export async function expectSamePackage(want: string, got: string): Promise<void> {
  const [wantShards, gotShards] = [await shardBytes(want), await shardBytes(got)];
  expect([...gotShards.keys()]).toEqual([...wantShards.keys()]);
  for (const [file, bytes] of wantShards) expect(gotShards.get(file)!.equals(bytes), file).toBe(true);
  const { createdAt: _a, ...wantManifest } = await readManifest(want);
  const { createdAt: _b, ...gotManifest } = await readManifest(got);
  expect(gotManifest).toEqual(wantManifest);
}
