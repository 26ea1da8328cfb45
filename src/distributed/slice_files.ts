/**
 * The files of a queued GradOT build's calibration slices on shared storage
 * (docs/DISTRIBUTED.md "Calibration slices"), msgpack like the block files
 * (`jobPackr`), each written atomically (src/io/atomic.ts) so a file that
 * exists is complete:
 *
 * - `<sha256>.slice`, named by the SHA-256 of its bytes: the job, i.e. the
 *   package being built, the model's directory and source hash, the slice's
 *   token ids and the chunk sizes (`offtune gradot-slice --input`);
 * - in the job's output directory `<sha256>/` (`--out`): `loss.msgpack`, the
 *   summed loss of each of the slice's head chunks, and per middle block and
 *   chunk of the slice `block-<i>-chunk-<k>.kfac`, every linear's KFAC
 *   inputs `x` and output gradients `γ` of that chunk as the backward gave
 *   them (`ChunkLinear`s: a shared input stored once).
 *
 * Readers check what they read and name the file in every error.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { readWholeFile, writeFileAtomic, writeFileAtomicSync } from "../io/atomic.ts";
import { CheckpointError } from "../io/errors.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { ChunkLinear } from "../model/calibration_chunk.ts";
import type { AdapterSplit } from "../records/records.ts";
import { jobPackr } from "./block_files.ts";

/** What a `.slice` file holds: everything `offtune gradot-slice` needs to run one slice's calibration. */
export interface SliceJob {
  /**
   * The package the build writes (absolute): two builds of one model and
   * calibration (another ratio) never share, and delete, each other's
   * slice files; a rerun of the same build finds its own.
   */
  build: string;
  /** The checkpoint (on shared storage), its source hash (checked when opened) and how the build opened it. */
  model: { dir: string; sourceHash: string; split: AdapterSplit; streamVocabulary: boolean };
  /** The slice's first sequence in the calibration set. */
  from: number;
  /** One past its last sequence. */
  to: number;
  /** Tokens per sequence T. */
  length: number;
  /** The slice's token ids `[(to - from)·T]`, row-major. */
  ids: Int32Array;
  /** Sequences per block chunk (the build's `--chunk`). */
  chunk: number;
  /** Sequences per head (loss) chunk. */
  headChunk: number;
}

/** What a `.kfac` file holds: one chunk of one middle block. */
export interface SliceChunk {
  /** The block's index. */
  block: number;
  /** The chunk's number inside its slice (0, 1, …). */
  chunk: number;
  /** The block's linears on the chunk, in `arch.linears` order (`backwardChunk`). */
  linears: ChunkLinear[];
}

/** `<out>/block-<block>-chunk-<chunk>.kfac`: where a slice job writes a middle block's chunk. */
export function sliceChunkFile(out: string, block: number, chunk: number): string {
  return join(out, `block-${block}-chunk-${chunk}.kfac`);
}

/** `<out>/loss.msgpack`: where a slice job writes its head chunks' summed losses. */
export function sliceLossFile(out: string): string {
  return join(out, "loss.msgpack");
}

/** The output directory of the job of `.slice` file `input`: its path without `.slice`. */
export function sliceOutDir(input: string): string {
  return input.replace(/\.slice$/, "");
}

/**
 * Writes `job` to `<dir>/<sha256>.slice` (atomically; an existing file of
 * that name has the same bytes and is kept) and returns its path.
 */
export async function writeSliceJob(dir: string, job: SliceJob): Promise<string> {
  const bytes = jobPackr.pack(job);
  const path = join(dir, `${createHash("sha256").update(bytes).digest("hex")}.slice`);
  mkdirSync(dir, { recursive: true });
  await writeFileAtomic(path, bytes);
  return path;
}

/** Unpacks `bytes` of `path`, or throws naming the file. */
function unpackFile(bytes: Uint8Array, path: string, what: string): unknown {
  try {
    return jobPackr.unpack(bytes);
  } catch (e) {
    throw new CheckpointError(path, `The ${what} "${path}" is not msgpack (${(e as Error).message}): a damaged file; remove it and run the build again`, { cause: e });
  }
}

const isCount = (v: unknown, least = 0): v is number => Number.isInteger(v) && (v as number) >= least;

/**
 * Reads a `.slice` file written by {@link writeSliceJob}.
 *
 * @throws CheckpointError naming the file when it is missing, not msgpack or not a slice job
 */
export async function readSliceJob(path: string): Promise<SliceJob> {
  const raw = unpackFile(await readWholeFile(path, "slice job"), path, "slice job") as Partial<SliceJob> | null;
  const bad = (what: string) => new CheckpointError(path, `The slice job "${path}" is malformed: ${what}`);
  if (typeof raw !== "object" || raw === null || typeof raw.model?.dir !== "string" || typeof raw.model.sourceHash !== "string") {
    throw bad("no model directory and source hash");
  }
  if (typeof raw.build !== "string") throw bad("no package it is built for");
  if (!isCount(raw.from) || !isCount(raw.to, raw.from + 1) || !isCount(raw.length, 2)) throw bad(`sequences [${raw.from}, ${raw.to}) of ${raw.length} tokens`);
  if (!isCount(raw.chunk, 1) || !isCount(raw.headChunk, 1)) throw bad(`chunk ${raw.chunk}, head chunk ${raw.headChunk}`);
  if (!(raw.ids instanceof Int32Array) || raw.ids.length !== (raw.to - raw.from) * raw.length) {
    throw bad(`${raw.ids instanceof Int32Array ? raw.ids.length : "no"} token ids for ${raw.to - raw.from} x ${raw.length}`);
  }
  return raw as SliceJob;
}

/** Writes one chunk of a middle block (synchronously: the backward goes on once it is on disk). */
export function writeSliceChunk(path: string, chunk: SliceChunk): void {
  writeFileAtomicSync(path, jobPackr.pack(chunk));
}

/** Whether `m` is a matrix whose data holds `rows × cols` float32 values. */
function isMatrix(m: unknown): m is Matrix {
  const v = m as Matrix | undefined;
  return isCount(v?.rows, 1) && isCount(v?.cols, 1) && v!.data instanceof Float32Array && v!.data.length === v!.rows * v!.cols;
}

/**
 * Reads the `.kfac` file `path`, which must hold chunk `chunk` of block
 * `block`.
 *
 * @throws CheckpointError naming the file when it is missing, not msgpack, of another block or chunk, or holds a malformed linear
 */
export async function readSliceChunk(path: string, block: number, chunk: number): Promise<SliceChunk> {
  const raw = unpackFile(await readWholeFile(path, "slice chunk"), path, "slice chunk") as Partial<SliceChunk> | null;
  const bad = (what: string) => new CheckpointError(path, `The slice chunk "${path}" ${what}`);
  if (typeof raw !== "object" || raw === null || !Array.isArray(raw.linears)) throw bad("holds no linears");
  if (raw.block !== block || raw.chunk !== chunk) throw bad(`holds chunk ${raw.chunk} of block ${raw.block}, expected chunk ${chunk} of block ${block}`);
  for (const l of raw.linears) {
    const rows = (l as ChunkLinear)?.gamma?.rows;
    if (typeof l?.name !== "string" || !isMatrix(l.gamma) || (l.x !== undefined && (!isMatrix(l.x) || l.x.rows !== rows))) {
      throw bad(`has a malformed linear "${l?.name}" (x and γ must be float32 matrices of the same rows)`);
    }
    if (l.x === undefined && typeof l.sharesInputWith !== "string") throw bad(`has linear "${l.name}" with neither an input nor the linear it shares one with`);
  }
  return raw as SliceChunk;
}

/** Writes the slice's head chunks' summed losses, in chunk order. */
export function writeSliceLoss(path: string, sums: number[]): void {
  writeFileAtomicSync(path, jobPackr.pack({ sums }));
}

/**
 * Reads the summed losses of a slice's head chunks.
 *
 * @throws CheckpointError naming the file when it is missing or holds no list of numbers
 */
export async function readSliceLoss(path: string): Promise<number[]> {
  const raw = unpackFile(await readWholeFile(path, "slice loss"), path, "slice loss") as { sums?: unknown } | null;
  if (!Array.isArray(raw?.sums) || raw.sums.length === 0 || raw.sums.some((s) => typeof s !== "number")) {
    throw new CheckpointError(path, `The slice loss "${path}" holds no list of summed losses`);
  }
  return raw.sums as number[];
}
