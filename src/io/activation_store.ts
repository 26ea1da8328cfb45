/**
 * Block-boundary activations of the calibration pass, kept on disk in an
 * {@link ActivationStore} (one temporary directory per pass, one file per
 * `[N, T, d]` float32 array) and processed in chunks of sequences, so only
 * one chunk is resident, in the tensor heap (capped at 4 GiB for wasm) and in
 * JS memory alike (docs/DESIGN.md "The shape"). Kept in memory, the block inputs
 * of an OPT-1.3B-shaped build with 2048 calibration tokens would take
 * 24 × 16.8 MB.
 *
 * Only `node:fs`, `node:os` and `node:path` are used, so the store runs under
 * Node and Deno alike. All calls are synchronous: the operators do their
 * work inside `next`.
 *
 * @module
 */
import { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { adoptScratch } from "../linalg/scratch_arrays.ts";
import { join } from "node:path";
import process from "node:process";
import type { Tensor } from "@tensorflow/tfjs";
import { readFullySync, writeFullySync } from "./read_fully.ts";
import { fileWriteError } from "./errors.ts";
import { ACTIVATIONS_PREFIX } from "./stale_temps.ts";
import { tf } from "../tensor/backend.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";
import type { ModelConfig } from "../model/types.ts";
import type { CalibrationSet } from "../records/records.ts";

/** `[from, to)` sequence ranges of at most `chunk` sequences covering `sequences`. */
export function sequenceChunks(sequences: number, chunk: number): Array<[number, number]> {
  if (!(chunk >= 1)) throw new RangeError(`Chunk size must be at least 1 sequence, got ${chunk}`);
  const ranges: Array<[number, number]> = [];
  for (let from = 0; from < sequences; from += chunk) ranges.push([from, Math.min(sequences, from + chunk)]);
  return ranges;
}

/** Tokens × MLP width a default chunk may span: 8 MiB per `[tokens, m]` float32 activation. */
const CHUNK_ACTIVATION_VALUES = 1 << 21;

/**
 * The default chunk: as many sequences as fit in about 512 tokens, fewer for
 * a wide MLP so one `[tokens, m]` activation stays under 8 MiB (at least one
 * sequence). Measured with `offtune bench gradot`: on OPT-125M (m 3072, 512
 * tokens) OpenBLAS runs at full speed while the VJP's transients stay a
 * quarter of a 2048-token chunk's (peak RSS 1.8 GB instead of 2.6 GB); on an
 * OPT-1.3B shape (m 8192) 128-token chunks cut the peak by 0.37 GB against
 * 512 for 7% more time, and this rule gives 256.
 */
export function defaultChunk(calibration: CalibrationSet, cfg: ModelConfig): number {
  const tokens = Math.min(512, Math.floor(CHUNK_ACTIVATION_VALUES / cfg.intermediate));
  return Math.max(1, Math.floor(tokens / calibration.length));
}

/**
 * One `[N, T, d]` float32 array in an {@link ActivationStore}, row-major,
 * read back by sequence range. Its owner disposes it once it is no longer
 * read; closing the store disposes every array left.
 */
export interface StoredActivations {
  /** N */
  readonly sequences: number;
  /** T */
  readonly length: number;
  /** d */
  readonly width: number;
  /** Sequences `[from, to)` as a fresh `[to - from, T, d]` row-major array. */
  read(from: number, to: number): Float32Array;
  /** Sequences `[from, to)` into `out` (`[to - from, T, d]` values, e.g. a tensor's heap memory). */
  readInto(from: number, to: number, out: Float32Array): void;
  /** Where sequences `[from, to)` lie in the array's file, for another thread to read ({@link readChunkAt}). */
  place(from: number, to: number): ChunkPlace;
  /** Deletes the array's file (idempotent). */
  dispose(): void;
}

/**
 * A calibration pass's activations on disk: a temporary directory under
 * `os.tmpdir()` (`offtune-activations-<pid>-*`, so a later run can tell a
 * killed process's store from a live one's: src/io/stale_temps.ts), made on
 * the first write, holding one file per array. Whoever owns the store closes
 * it when the pass ends, completes, errors or is unsubscribed alike, so no
 * file outlives the pass.
 *
 * A persistent store (given `directory`) belongs to a resumable build
 * (src/io/build_resume.ts): arrays are written under the names the
 * caller gives, each under `<name>.part` until complete, so a later run can
 * {@link open} the complete ones; closing it keeps the directory, which its
 * owner removes.
 */
export class ActivationStore {
  #dir: string | undefined;
  #closed = false;
  #files = 0;
  readonly #persistent: boolean;

  /** @param directory a persistent store's directory (created if missing); default a temporary one */
  constructor(directory?: string) {
    this.#persistent = directory !== undefined;
    if (directory !== undefined) {
      mkdirSync(directory, { recursive: true });
      this.#dir = directory;
    }
  }

  /**
   * A persistent store's complete array `name` of `[sequences, t, d]`, or
   * undefined when it was never completed (or has been disposed).
   */
  open(name: string, sequences: number, t: number, d: number): StoredActivations | undefined {
    if (!this.#persistent || this.#closed) return undefined;
    const path = join(this.#dir!, name);
    try {
      if (statSync(path).size !== sequences * t * d * Float32Array.BYTES_PER_ELEMENT) return undefined;
    } catch {
      return undefined;
    }
    return storedArray(path, sequences, t, d);
  }

  /** The temporary directory, or `undefined` before the first write and after {@link close}. */
  get directory(): string | undefined {
    return this.#closed ? undefined : this.#dir;
  }

  /**
   * Applies `fn` to every chunk of `sequences` and appends each `[n, T, d]`
   * result to a new file as it is produced, so the whole `[N, T, d]` array
   * is never in memory. `fn`'s result is disposed here.
   *
   * @param name the array's file name; required in a persistent store, where
   *   an earlier run's incomplete `<name>.part` is overwritten
   */
  write(
    sequences: number,
    t: number,
    d: number,
    chunk: number,
    fn: (from: number, to: number) => Tensor,
    name?: string,
  ): StoredActivations {
    return this.writeEach(sequences, t, [d], chunk, (from, to) => [fn(from, to)], name === undefined ? undefined : [name])[0];
  }

  /**
   * {@link write} for several arrays computed by one pass over the chunks:
   * `fn` returns one `[n, T, widths[k]]` tensor per array (all disposed
   * here), and array `k` goes to its own file (`names[k]` in a persistent
   * store). The calibration forward writes a block's output and its linears'
   * outputs this way (`src/operators/calibrate_forward.ts`).
   */
  writeEach(
    sequences: number,
    t: number,
    widths: readonly number[],
    chunk: number,
    fn: (from: number, to: number) => Tensor[],
    names?: readonly string[],
  ): StoredActivations[] {
    const files = this.#startArrays(widths, names);
    for (const [from, to] of sequenceChunks(sequences, chunk)) {
      const ys = fn(from, to); // [n, T, widths[k]] each
      try {
        // A heap view each: nothing below makes a tensor.
        appendChunks(files, ys.map((y) => peekValues(y)), from, to, t);
      } finally {
        tf.dispose(ys);
      }
    }
    return this.#finishArrays(files, sequences, t);
  }

  /**
   * {@link write} with chunks computed elsewhere (a worker pool): `fn` is
   * called for every chunk at once, and each result `[n, T, d]` is appended
   * in chunk order as soon as it and those before it are in, so the file's
   * bytes are those of {@link write} on the same values. Each result is the
   * store's once returned: appended, it goes to the scratch pool for reuse
   * (src/linalg/scratch_arrays.ts), so `fn` must return an array nothing
   * else reads afterwards.
   */
  async writeAsync(
    sequences: number,
    t: number,
    d: number,
    chunk: number,
    fn: (from: number, to: number) => Promise<Float32Array>,
    name?: string,
  ): Promise<StoredActivations> {
    const each = (from: number, to: number) => fn(from, to).then((y) => [y]);
    return (await this.writeEachAsync(sequences, t, [d], chunk, each, name === undefined ? undefined : [name]))[0];
  }

  /**
   * {@link writeEach} with chunks computed elsewhere (a worker pool), as
   * {@link writeAsync} is {@link write}'s: `fn` returns one
   * `[n, T, widths[k]]` array per file, appended in chunk order and then
   * given to the scratch pool, as {@link writeAsync}'s.
   */
  async writeEachAsync(
    sequences: number,
    t: number,
    widths: readonly number[],
    chunk: number,
    fn: (from: number, to: number) => Promise<Float32Array[]>,
    names?: readonly string[],
  ): Promise<StoredActivations[]> {
    const files = this.#startArrays(widths, names);
    const chunks = sequenceChunks(sequences, chunk);
    const results = chunks.map(([from, to]) => fn(from, to));
    results.forEach((r) => r.catch(() => {})); // the first failure in chunk order is the one thrown
    for (let k = 0; k < chunks.length; k++) {
      if (this.#closed) throw new Error("The activation store is closed");
      const values = await results[k];
      appendChunks(files, values, chunks[k][0], chunks[k][1], t);
      adoptScratch(...values); // written: the next chunks' arrays
    }
    return this.#finishArrays(files, sequences, t);
  }

  /**
   * {@link writeEach} with each chunk's arrays written where they were
   * computed (a calibration worker, {@link writeChunkAt}): `fn` is called for
   * every chunk at once with the chunk's place in each array's file, and
   * resolves once it has written them there. The files' bytes are those of
   * {@link writeEach} on the same values, in any order of the chunks, and the
   * arrays never pass through this thread (docs/DISTRIBUTED.md "How a GradOT
   * build uses the cores").
   */
  async writeEachAt(
    sequences: number,
    t: number,
    widths: readonly number[],
    chunk: number,
    fn: (from: number, to: number, targets: ChunkPlace[]) => Promise<void>,
    names?: readonly string[],
  ): Promise<StoredActivations[]> {
    const arrays = this.beginAt(sequences, t, widths, names);
    await Promise.all(sequenceChunks(sequences, chunk).map(([from, to]) => fn(from, to, arrays.places(from, to))));
    return arrays.finish();
  }

  /**
   * Arrays of `[sequences, t, widths[k]]` whose chunks are written where they
   * are computed ({@link writeChunkAt}), in any order and at any time until
   * {@link ArraysInProgress.finish}: the calibration forward on a pool
   * starts a block's chunks as soon as the block before has written theirs
   * (docs/DISTRIBUTED.md "How a GradOT build uses the cores"), so a chunk
   * of one block is read at its place while the other chunks are still
   * being written. A persistent store names array `k` `names[k]` once
   * finished, and `<name>.part` till then.
   */
  beginAt(sequences: number, t: number, widths: readonly number[], names?: readonly string[]): ArraysInProgress {
    const files = this.#startArrays(widths, names);
    const rowBytes = t * Float32Array.BYTES_PER_ELEMENT; // one position of one channel
    return {
      places: (from, to) => files.map(({ path, width }) => ({ path, position: from * rowBytes * width, values: (to - from) * t * width })),
      finish: () => {
        if (this.#closed) throw new Error("The activation store is closed");
        return this.#finishArrays(files, sequences, t);
      },
    };
  }

  /** Creates each array's empty file (a persistent store's under `<name>.part`). */
  #startArrays(widths: readonly number[], names: readonly string[] | undefined): ArrayFile[] {
    if (this.#closed) throw new Error("The activation store is closed");
    if (this.#persistent && names?.length !== widths.length) throw new Error("A persistent activation store needs a name for each array");
    if (this.#dir === undefined) {
      this.#dir = mkdtempSync(join(tmpdir(), `${ACTIVATIONS_PREFIX}${process.pid}-`));
      openDirectories.add(this.#dir);
      watchForExit();
    }
    return widths.map((width, k) => {
      const final = join(this.#dir!, names?.[k] ?? `${String(this.#files++).padStart(4, "0")}.f32`);
      const path = this.#persistent ? `${final}.part` : final;
      closeSync(openSync(path, this.#persistent ? "w" : "wx"));
      return { path, final, width };
    });
  }

  /** Completes the arrays' files (a persistent store's renamed to their names). */
  #finishArrays(files: ArrayFile[], sequences: number, t: number): StoredActivations[] {
    if (this.#persistent) for (const file of files) renameSync(file.path, file.final);
    return files.map((file) => storedArray(file.final, sequences, t, file.width));
  }

  /** Deletes the directory and every file in it (idempotent; a persistent store's are kept); later writes throw. */
  close(): void {
    this.#closed = true;
    if (this.#dir && !this.#persistent) {
      rmSync(this.#dir, { recursive: true, force: true });
      openDirectories.delete(this.#dir);
    }
  }
}

/** Arrays being written chunk by chunk where the chunks are computed ({@link ActivationStore.beginAt}). */
export interface ArraysInProgress {
  /** Where sequences `[from, to)` of each array lie in its file while it is written: what to write there, or read once written. */
  places(from: number, to: number): ChunkPlace[];
  /**
   * The complete arrays, once every chunk is written and no chunk is read
   * at its place any more (a persistent store's files are renamed).
   *
   * @throws Error when the store was closed meanwhile
   */
  finish(): StoredActivations[];
}

/** An array file being written: its path while written, its final path and its width. */
interface ArrayFile {
  path: string;
  final: string;
  width: number;
}

/** Appends sequences `[from, to)` of each array (`[n, T, files[k].width]` values) to its file. */
function appendChunks(files: ArrayFile[], data: Float32Array[], from: number, to: number, t: number): void {
  if (data.length !== files.length) throw new Error(`Activation chunk [${from}, ${to}) has ${data.length} arrays, expected ${files.length}`);
  files.forEach(({ path, width }, k) => {
    try {
      const values = data[k];
      if (values.length !== (to - from) * t * width) {
        throw new Error(`Activation chunk [${from}, ${to}) has ${values.length} values, expected ${to - from} x ${t} x ${width}`);
      }
      // No descriptor stays open across a chunk's computation, which may emit downstream and close the store.
      appendFileSync(path, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    } catch (e) {
      throw fileWriteError(path, e); // a full temporary disk names the file
    }
  });
}

/**
 * Where one chunk of one stored array lies in its file: the file, the
 * chunk's first byte and its value count. What a calibration worker is sent
 * to read a chunk ({@link readChunkAt}, {@link StoredActivations.place}) or
 * to write one ({@link writeChunkAt}, {@link ActivationStore.writeEachAt})
 * itself, so the chunk's values never pass through the building thread.
 */
export interface ChunkPlace {
  path: string;
  position: number;
  values: number;
}

/**
 * Reads one chunk of a stored array from its place into `out` (`values`
 * values: a tensor's heap memory, say), from any thread.
 *
 * @throws Error naming the file when `out` is not the chunk's size or the file ends first
 */
export function readChunkAt(place: ChunkPlace, out: Float32Array): void {
  const { path, position } = place;
  if (out.length !== place.values) throw new Error(`Activation chunk of ${path} has ${place.values} values, read into ${out.length}`);
  const fd = openSync(path, "r");
  try {
    if (readFullySync(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position) < out.byteLength) {
      throw new Error(`Activation file ${path} ends before byte ${position + out.byteLength}`);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes one chunk of a stored array (`[n, T, width]` values) at its place
 * in the array's file, from any thread; the file was made by
 * {@link ActivationStore.writeEachAt}. No descriptor stays open after it.
 *
 * @throws Error naming the file when `values` is not the chunk's size or the write fails
 */
export function writeChunkAt(target: ChunkPlace, values: Float32Array): void {
  const { path, position } = target;
  if (values.length !== target.values) throw new Error(`Activation chunk for ${path} has ${values.length} values, expected ${target.values}`);
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  try {
    const fd = openSync(path, "r+");
    try {
      writeFullySync(fd, bytes, position);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw fileWriteError(path, e); // a full temporary disk, or a store closed meanwhile, names the file
  }
}

/** Store directories not closed yet: removed if the process exits or is interrupted first. */
const openDirectories = new Set<string>();
let watching = false;

function removeOpenDirectories(): void {
  for (const dir of openDirectories) rmSync(dir, { recursive: true, force: true });
  openDirectories.clear();
}

/**
 * Removes open store directories (hundreds of MB for a large model) on exit
 * and on SIGINT/SIGTERM. A signal nobody else handles is re-raised after the
 * clean-up, so the process still ends as the signal says.
 */
function watchForExit(): void {
  if (watching) return;
  watching = true;
  process.on("exit", removeOpenDirectories);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      removeOpenDirectories();
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

/** A handle on the `[sequences, t, d]` float32 file at `path`. */
function storedArray(path: string, sequences: number, t: number, d: number): StoredActivations {
  const row = t * d * Float32Array.BYTES_PER_ELEMENT;
  const place = (from: number, to: number): ChunkPlace => {
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= sequences)) {
      throw new RangeError(`Sequence range [${from}, ${to}) is outside [0, ${sequences})`);
    }
    return { path, position: from * row, values: (to - from) * t * d };
  };
  const readInto = (from: number, to: number, out: Float32Array): void => {
    const chunk = place(from, to);
    if (out.length !== chunk.values) throw new Error(`Sequences [${from}, ${to}) of [${sequences}, ${t}, ${d}] do not fill ${out.length} values`);
    readChunkAt(chunk, out);
  };
  return {
    sequences,
    length: t,
    width: d,
    read(from, to) {
      const out = new Float32Array(Math.max(0, to - from) * t * d); // [to - from, T, d]
      readInto(from, to, out);
      return out;
    },
    readInto,
    place,
    dispose() {
      rmSync(path, { force: true });
    },
  };
}

/**
 * Sequences `[from, to)` of a stored `[N, T, d]` array, as a `[to - from, T, d]`
 * tensor, read from the file straight into the tensor's memory (no JS copy
 * on the wasm backend).
 */
export function chunkTensor(data: StoredActivations, from: number, to: number): Tensor {
  return filledTensor([to - from, data.length, data.width], (out) => data.readInto(from, to, out));
}

/** Token ids of sequences `[from, to)` as an int32 `[to - from, T]` tensor. */
export function chunkIds(calibration: CalibrationSet, from: number, to: number): Tensor {
  const t = calibration.length;
  return tf.tensor2d(calibration.ids.subarray(from * t, to * t), [to - from, t], "int32");
}
