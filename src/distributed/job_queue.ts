/**
 * Verb runs as jobs of a BullMQ queue on Redis, for many machines that share
 * storage (docs/DISTRIBUTED.md "Many machines"). A job is "run `offtune
 * <args>`, logging to `log`": the same verb process the local path runs
 * (src/cli/run_verb.ts), run by whichever `offtune worker` takes it.
 *
 * Jobs are idempotent by content: the job id is the SHA-256 of the arguments
 * and of the contents of the input files and directories the job names, so
 * submitting the same work twice (two experiments, or a coordinator run
 * again after a crash) waits on the one job, and a completed job whose
 * outputs still exist is reused, never redone.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type ConnectionOptions, Queue, QueueEvents } from "bullmq";
import { reachRedis, type RedisTarget } from "./redis_reach.ts";

/** The queue every offtune worker serves. */
export const QUEUE_NAME = "offtune";

/** A verb run to do on some machine. */
export interface VerbJob {
  /** `offtune`'s arguments (verb first), with paths on shared storage. */
  args: string[];
  /** The file the verb's output is appended to (on shared storage), if any. */
  log?: string;
  /** Files and directories the run reads: their contents name the job. */
  inputs: string[];
  /** What the run writes: a completed job whose outputs all exist is reused. */
  outputs: string[];
}

/** The flags of offtune's verbs that name files or directories a run reads. */
const INPUT_FLAGS = new Set(["--model", "--emulator", "--adapter", "--calibration", "--tasks-dir", "--ppl-data", "--tokenizer"]);
/** The flags that name what a run writes. */
const OUTPUT_FLAGS = new Set(["--out", "--json", "--timings"]);

/**
 * The job of running `offtune <args>` logging to `log`: the paths its flags
 * name made absolute (a worker may run in another directory), the inputs
 * and outputs read off the flags (`--model`, `--emulator`, `--adapter`,
 * `--calibration`, `--tasks-dir`, `--ppl-data`, `--tokenizer` in; `--out`,
 * `--json`, `--timings` out).
 */
export function verbJob(args: string[], log?: string): VerbJob {
  const absolute = args.map((arg, i) => (INPUT_FLAGS.has(args[i - 1]) || OUTPUT_FLAGS.has(args[i - 1]) ? resolve(arg) : arg));
  const named = (flags: Set<string>) => absolute.filter((_, i) => flags.has(absolute[i - 1]));
  return { args: absolute, ...(log ? { log: resolve(log) } : {}), inputs: named(INPUT_FLAGS), outputs: named(OUTPUT_FLAGS) };
}

/**
 * The BullMQ connection of a `--queue` URL, `redis://[user:password@]host:port[/db]`.
 *
 * @throws Error naming `--queue` when the URL is not a redis:// URL with a host
 */
export function queueConnection(url: string): RedisTarget & { maxRetriesPerRequest: null } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--queue "${url}" is not a URL: expected redis://host:port`);
  }
  if (parsed.protocol !== "redis:" || parsed.hostname === "") {
    throw new Error(`--queue "${url}" is not a redis://host:port URL`);
  }
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`--queue "${url}": the database "${parsed.pathname.slice(1)}" is not a number`);
  return {
    host: parsed.hostname,
    port: parsed.port === "" ? 6379 : Number(parsed.port),
    db,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    maxRetriesPerRequest: null, // BullMQ's blocking commands must not time out
  };
}

/**
 * The file hashes this process computed, by path, with the inode, size and
 * modification time they were computed at: a checkpoint that many jobs name
 * is read once, and again only once it changed.
 */
const fileHashes = new Map<string, { ino: number; size: number; mtimeMs: number; sha256: string }>();

/** SHA-256 of a file's bytes, or of a directory's entries (names and contents, sorted) recursively. */
async function contentHash(path: string): Promise<string> {
  const info = await stat(path).catch(() => {
    throw new Error(`The job input "${path}" does not exist`);
  });
  if (info.isDirectory()) {
    const hash = createHash("sha256");
    for (const name of (await readdir(path)).sort()) hash.update(`${name}\0${await contentHash(join(path, name))}\0`);
    return hash.digest("hex");
  }
  const known = fileHashes.get(path);
  if (known && known.ino === info.ino && known.size === info.size && known.mtimeMs === info.mtimeMs) return known.sha256;
  const sha256 = createHash("sha256").update(await readFile(path)).digest("hex");
  fileHashes.set(path, { ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, sha256 });
  return sha256;
}

/** The id of `job`: SHA-256 of its arguments and its inputs' contents (the module doc). */
export async function jobId(job: Pick<VerbJob, "args" | "inputs">): Promise<string> {
  const inputs = [];
  for (const path of job.inputs) inputs.push([path, await contentHash(path)]);
  return createHash("sha256").update(JSON.stringify({ args: job.args, inputs })).digest("hex");
}

/** Submits verb jobs to a queue and waits for them (`experiment --queue`, `build-emulator --queue`). */
export class JobSubmitter {
  readonly #queue: Queue;
  readonly #events: QueueEvents;
  readonly #url: string;

  private constructor(url: string, connection: ConnectionOptions) {
    this.#url = url;
    this.#queue = new Queue(QUEUE_NAME, { connection });
    this.#events = new QueueEvents(QUEUE_NAME, { connection });
    // A connection lost later is retried by the client, and the waits resume then.
    const retried = () => {};
    this.#queue.on("error", retried);
    this.#events.on("error", retried);
  }

  /**
   * Connects to the queue at `url` (a `--queue` URL).
   *
   * @throws Error naming `--queue` when the URL is not a redis:// URL or Redis does not answer there
   */
  static async open(url: string): Promise<JobSubmitter> {
    const connection = queueConnection(url);
    await reachRedis(url, connection);
    return new JobSubmitter(url, connection);
  }

  /**
   * Runs `job` on some worker and resolves once it completed, at once when
   * the same job completed before and its outputs exist; rejects with the
   * worker's error when it failed.
   */
  async run(job: VerbJob): Promise<void> {
    const id = await jobId(job);
    const existing = await this.#queue.getJob(id);
    if (existing) {
      const state = await existing.getState();
      if (state === "completed" && job.outputs.every((p) => existsSync(p))) return;
      if (state === "completed" || state === "failed") await existing.remove();
    }
    const added = await this.#queue.add("verb", job, { jobId: id, removeOnComplete: false, removeOnFail: false });
    try {
      await added.waitUntilFinished(this.#events);
    } catch (e) {
      throw new Error(`offtune ${job.args.join(" ")} failed on a worker of ${this.#url}: ${(e as Error).message}${job.log ? ` (log: ${job.log})` : ""}`);
    }
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    await this.#events.close();
    await this.#queue.close();
  }
}
