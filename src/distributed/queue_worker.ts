/**
 * `offtune worker`'s body: serves the jobs of the offtune queue
 * (src/distributed/job_queue.ts) until stopped, each as a verb process
 * (src/cli/run_verb.ts), `concurrency` at a time (docs/DISTRIBUTED.md
 * "Many machines").
 *
 * Each job it takes is first claimed in `<storage>/.offtune-queue/claims/`:
 * a file `<job id>.<start time ms>.<pid>.<host>` (holding the command line)
 * says which worker ran it and when, one per run (what an operator, or the
 * crash test, looks at). A worker that dies holding a job stops
 * renewing its lock; after `lockMs` another worker's stalled-job check puts
 * the job back in the queue and some worker runs it again. The verbs' own
 * resumption (docs/GUARANTEES.md "What resumes") and atomic writes make
 * running a job twice harmless.
 *
 * @module
 */
import { mkdirSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type Job, Worker } from "bullmq";
import { runVerb } from "../cli/run_verb.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { QUEUE_NAME, queueConnection, type VerbJob } from "./job_queue.ts";
import { reachRedis } from "./redis_reach.ts";

/** Options of {@link serveQueue}. */
export interface WorkerOptions {
  /** The `--queue` URL (redis://host:port). */
  queue: string;
  /** The shared directory every machine sees (claims are written there). */
  storage: string;
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Milliseconds a job's lock lasts without renewal before it counts as stalled (default 30000). */
  lockMs?: number;
  /** Told of errors once serving (a lost Redis connection, which the worker retries; a failed job). */
  onError?: (error: Error) => void;
}

/** The directory of a storage's job claims. */
export function claimsDir(storage: string): string {
  return join(storage, ".offtune-queue", "claims");
}

/** A running worker: {@link stop} lets its running jobs finish, then closes. */
export interface QueueWorker {
  /** Takes no new job, waits for the running ones, disconnects. */
  stop(): Promise<void>;
}

/**
 * Starts serving the queue at `options.queue`.
 *
 * @throws Error naming `--storage` when the storage directory does not exist, or `--queue` when Redis cannot be reached
 */
export async function serveQueue(options: WorkerOptions): Promise<QueueWorker> {
  let isDir = false;
  try {
    isDir = statSync(options.storage).isDirectory();
  } catch { /* reported below */ }
  if (!isDir) throw new Error(`--storage "${options.storage}" is not a directory: give the shared directory every worker sees`);
  const claims = claimsDir(options.storage);
  mkdirSync(claims, { recursive: true });
  const connection = queueConnection(options.queue);
  await reachRedis(options.queue, connection);
  const lockDuration = options.lockMs ?? 30_000;
  const worker = new Worker<VerbJob>(
    QUEUE_NAME,
    async (job: Job<VerbJob>) => {
      const claim = join(claims, `${job.id}.${Date.now()}.${process.pid}.${hostname()}`);
      await writeFileAtomic(claim, new TextEncoder().encode(job.data.args.join(" ")));
      await runVerb(job.data.args, job.data.log);
    },
    {
      connection,
      concurrency: options.concurrency ?? 1,
      lockDuration,
      stalledInterval: Math.max(500, Math.floor(lockDuration / 2)),
      maxStalledCount: 3,
    },
  );
  worker.on("error", (e) => options.onError?.(e));
  await worker.waitUntilReady();
  return { stop: () => worker.close() };
}
