// The fuzzing harness of fuzz.test.ts: seeded mutations of a file's bytes,
// and a runner that feeds each case to fuzz_worker.ts in a worker thread with
// a per-case time limit (a hung decoder is terminated, counted, and the
// worker restarted), so a hang fails the test instead of stalling CI.
import { WorkerPool } from "../../src/distributed/worker_pool.ts";
import { Prng } from "../../src/train/prng.ts";

/** What the worker is asked to do with one case's bytes (see fuzz_worker.ts). */
export interface FuzzRequest {
  kind: "shard" | "manifest" | "safetensors";
  bytes: Uint8Array;
  /** Directory the case's file is written into. */
  dir?: string;
}

/** How one case ended: decoded cleanly, refused with a CheckpointError, or anything else (a failure). */
export type FuzzOutcome = { result: "decoded" | "typed" } | { result: "untyped"; error: string };

/** Counts over a fuzz run, as the test prints them. */
export interface FuzzCounts {
  cases: number;
  hangs: number;
  typed: number;
  decoded: number;
  /** The cases that ended in anything but a clean decode or a CheckpointError: mutation and error. */
  untyped: string[];
  /** Mutation of each case that ran past the limit. */
  hung: string[];
  slowestMs: number;
}

/** 32-bit values that break length fields: zero, one, negatives, the int32 edges, the file's size. */
function interestingInt(prng: Prng, size: number): number {
  const values = [0, 1, -1, 0x7fffffff, -0x80000000, 0xffff, 8, size, 2 * size, size - 1];
  return prng.below(4) === 0 ? (prng.uniform() * 2 ** 32) | 0 : values[prng.below(values.length)];
}

/**
 * One seeded mutation of `bytes` (a fresh array) and its description: bit
 * flips, a truncation, an int32/int64 length field overwritten with an
 * edge value, a splice of bytes from `donor` (overwritten in place or
 * inserted), or a run of bytes set to 0x00/0xff.
 */
export function mutate(bytes: Uint8Array, donor: Uint8Array, prng: Prng): { bytes: Uint8Array; how: string } {
  const n = bytes.length;
  const at = () => prng.below(Math.max(1, n));
  switch (prng.below(5)) {
    case 0: {
      const out = bytes.slice();
      const flips = 1 + prng.below(8);
      const where: number[] = [];
      for (let i = 0; i < flips; i++) {
        const p = at();
        out[p] ^= 1 << prng.below(8);
        where.push(p);
      }
      return { bytes: out, how: `bit flips at ${where.join(",")}` };
    }
    case 1: {
      const length = prng.below(Math.max(1, n));
      return { bytes: bytes.slice(0, length), how: `truncated to ${length}` };
    }
    case 2: {
      const out = bytes.slice();
      const aligned = prng.below(2) === 0;
      const p = Math.min(aligned ? at() & ~3 : at(), Math.max(0, n - 8));
      const value = interestingInt(prng, n);
      const view = new DataView(out.buffer);
      if (prng.below(3) === 0 && p + 8 <= n) view.setBigInt64(p, BigInt(value), true);
      else if (p + 4 <= n) view.setInt32(p, value, true);
      return { bytes: out, how: `length field at ${p} set to ${value}` };
    }
    case 3: {
      const from = prng.below(Math.max(1, donor.length));
      const piece = donor.slice(from, from + 1 + prng.below(64));
      const p = at();
      if (prng.below(2) === 0) {
        const out = bytes.slice();
        out.set(piece.subarray(0, Math.max(0, n - p)), p);
        return { bytes: out, how: `${piece.length} donor bytes from ${from} written at ${p}` };
      }
      const out = new Uint8Array(n + piece.length);
      out.set(bytes.subarray(0, p));
      out.set(piece, p);
      out.set(bytes.subarray(p), p + piece.length);
      return { bytes: out, how: `${piece.length} donor bytes from ${from} inserted at ${p}` };
    }
    default: {
      const out = bytes.slice();
      const p = at();
      const run = 1 + prng.below(32);
      const value = prng.below(2) === 0 ? 0 : 0xff;
      out.fill(value, p, p + run);
      return { bytes: out, how: `${run} bytes at ${p} set to ${value}` };
    }
  }
}

/** `cases` seeded mutations (one to three each) of the corpus files, in a fixed order. */
export function* mutations(corpus: readonly Uint8Array[], cases: number, seed: number): Generator<{ bytes: Uint8Array; how: string }> {
  const prng = new Prng(seed);
  for (let i = 0; i < cases; i++) {
    let bytes = corpus[i % corpus.length];
    const donor = corpus[prng.below(corpus.length)];
    const steps: string[] = [];
    for (let k = 1 + prng.below(3); k > 0; k--) {
      const m = mutate(bytes, donor, prng);
      bytes = m.bytes;
      steps.push(m.how);
    }
    yield { bytes, how: `case ${i}: ${steps.join("; ")}` };
  }
}

/** Every path to a value inside `value` (object keys and array indices), the root excluded. */
function paths(value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return [];
  const keys: Array<string | number> = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return keys.flatMap((k) => [[...prefix, k], ...paths((value as Record<string | number, unknown>)[k], [...prefix, k])]);
}

/**
 * `cases` seeded field-level mutations of a decoded document, re-encoded
 * with `encode`: a value (at any depth) replaced by an edge value or by
 * another value of the document (e.g. two shards' block numbers swapped
 * one way), or deleted. Byte-level mutations mostly break the encoding
 * itself; these reach the validation behind it.
 */
export function* fieldMutations(
  document: unknown,
  encode: (value: unknown) => Uint8Array,
  cases: number,
  seed: number,
): Generator<{ bytes: Uint8Array; how: string }> {
  const prng = new Prng(seed);
  const all = paths(document);
  const edges: unknown[] = [0, -1, 1, 2 ** 53, 1e300, 0.5, "", "x", "../x", "outer", [], {}, null, true, [0, 1], { a: 1 }];
  for (let i = 0; i < cases; i++) {
    const copy = structuredClone(document);
    const path = all[prng.below(all.length)];
    const parent = path.slice(0, -1).reduce((v: any, k) => v[k], copy) as Record<string | number, unknown>;
    const key = path[path.length - 1];
    const choice = prng.below(4);
    let how: string;
    if (choice === 0 && !Array.isArray(parent)) {
      delete parent[key];
      how = "deleted";
    } else if (choice === 1) {
      const from = all[prng.below(all.length)];
      parent[key] = structuredClone(from.reduce((v: any, k) => v[k], document));
      how = `set to the value at ${from.join(".")}`;
    } else {
      parent[key] = structuredClone(edges[prng.below(edges.length)]);
      how = `set to ${JSON.stringify(parent[key])}`;
    }
    yield { bytes: encode(copy), how: `case ${i}: ${path.join(".")} ${how}` };
  }
}

const WORKER = new URL("./fuzz_worker.ts", import.meta.url);

/**
 * Runs each case in a worker, allowing it `limitMs`; a case over the limit
 * is a hang: the worker is terminated and a fresh one takes the next case.
 */
export async function runFuzz(
  cases: Iterable<{ bytes: Uint8Array; how: string }>,
  request: (bytes: Uint8Array) => FuzzRequest,
  limitMs: number,
): Promise<FuzzCounts> {
  const counts: FuzzCounts = { cases: 0, hangs: 0, typed: 0, decoded: 0, untyped: [], hung: [], slowestMs: 0 };
  let pool = await WorkerPool.start<FuzzRequest, FuzzOutcome>(WORKER, { size: 1 });
  try {
    for (const { bytes, how } of cases) {
      counts.cases++;
      const started = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const limit = new Promise<"hang">((resolve) => (timer = setTimeout(() => resolve("hang"), limitMs)));
      const outcome = await Promise.race([
        pool.call(0, request(bytes)).catch((e: Error): FuzzOutcome => ({ result: "untyped", error: `worker: ${e.message}` })),
        limit,
      ]);
      clearTimeout(timer);
      counts.slowestMs = Math.max(counts.slowestMs, performance.now() - started);
      if (outcome === "hang") {
        counts.hangs++;
        counts.hung.push(how);
        await pool.close();
        pool = await WorkerPool.start<FuzzRequest, FuzzOutcome>(WORKER, { size: 1 });
      } else if (outcome.result === "untyped") {
        counts.untyped.push(`${how}: ${outcome.error}`);
      } else {
        counts[outcome.result]++;
      }
    }
  } finally {
    await pool.close();
  }
  return counts;
}

/** The line a fuzz test prints: `shard fuzz: 600 cases, 0 hangs, 512 typed errors, 88 decoded (slowest 12 ms)`. */
export function fuzzSummary(label: string, c: FuzzCounts): string {
  return `${label} fuzz: ${c.cases} cases, ${c.hangs} hangs, ${c.typed} typed errors, ${c.decoded} decoded, ` +
    `${c.untyped.length} other errors (slowest ${c.slowestMs.toFixed(0)} ms)`;
}
