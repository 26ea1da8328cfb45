/**
 * The progress of an emulator build kept on disk, so that a build killed at
 * any point (even by `kill -9`) and run again with the same inputs and flags
 * continues where it stopped and writes the same bytes (docs/GUARANTEES.md
 * "What resumes").
 *
 * The package is built in `<out>.partial-<key>`, where `key` hashes
 * everything the bytes depend on (source checkpoint, calibration tokens,
 * method settings, dtype, split, chunking): only the very same build finds
 * and continues it. Beside the shards it holds
 *
 * - `activations/`: the calibration pass's arrays (a persistent
 *   {@link ActivationStore}): `act-<i>` the input of block `i` (`act-<L>` the
 *   last block's output), `grad-<i>` the loss gradient at block `i`'s input
 *   (`grad-<L>` at the head), each renamed into place once complete and
 *   deleted once no unfinished block needs it;
 * - `progress.json`: the shards written so far, with their manifest entries
 *   and per-block notes, and the calibration loss; rewritten atomically after
 *   each shard;
 * - `owner`: the pid of the process building, so two builds never share the
 *   directory.
 *
 * A rerun verifies every listed shard (size and sha256) and skips those
 * blocks; the forward skips blocks whose output is on disk, the backward
 * starts at the highest unfinished block from the stored gradient. At most
 * the block in flight is redone (with a worker pool, the blocks still being
 * scored and compressed too: their arrays are kept till their shards are
 * written, {@link ResumableBuild.whenWritten}). The bookkeeping files are removed before the
 * directory is renamed to `<out>`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import { writeFileAtomicSync } from "./atomic.ts";
import type { ManifestShard } from "./manifest.ts";
import { pidIsAlive, removeStaleTemporariesIn } from "./stale_temps.ts";
import type { BlockRole, CompressionNote, ModelHandle } from "../records/records.ts";
import { ActivationStore } from "./activation_store.ts";

/** One block whose shard is written: its manifest entry and what the manifest's `extra.blocks` says of it. */
export interface WrittenBlock {
  /** The block's index in the original model. */
  index: number;
  /** Its role in the split (adapter or middle). */
  role: BlockRole;
  /** Parameters stored in its shard. */
  params: number;
  /** How it was compressed (middle blocks of a GradOT build). */
  compression?: CompressionNote;
  /** Its manifest entry (file, hash, bytes). */
  shard: ManifestShard;
}

/** `progress.json`. */
interface Progress {
  key: string;
  loss?: number;
  blocks: WrittenBlock[];
}

const PROGRESS_FILE = "progress.json";
const OWNER_FILE = "owner";
const ACTIVATIONS_DIR = "activations";

/** The name a build's resumable directory gets: `<out>.partial-<key>`. */
function partialName(out: string, key: string): string {
  return `${resolve(out)}.partial-${key}`;
}

/**
 * The resume key of a build: SHA-256 (first 16 hex digits) of the JSON of
 * `inputs`, which must hold everything the package's bytes depend on. The
 * model's weight files are named by size and modification time besides the
 * handle's source hash (which covers config and headers only).
 */
function buildKey(model: ModelHandle, inputs: Record<string, unknown>): string {
  const files = readdirSync(model.source)
    .filter((f) => f.endsWith(".safetensors"))
    .sort()
    .map((f) => {
      const s = statSync(join(model.source, f));
      return [f, s.size, s.mtimeMs];
    });
  return createHash("sha256").update(JSON.stringify({ sourceHash: model.sourceHash, files, inputs })).digest("hex").slice(0, 16);
}

const readOwner = (dir: string): number | undefined => {
  try {
    const pid = Number(readFileSync(join(dir, OWNER_FILE), "utf8"));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
};

/** Sha256 and size of a file, or undefined when it cannot be read. */
function fileDigest(path: string): { sha256: string; bytes: number } | undefined {
  try {
    const bytes = readFileSync(path);
    return { sha256: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.byteLength };
  } catch {
    return undefined;
  }
}

/** A build's resumable directory; see the module doc. */
export class ResumableBuild {
  /** The directory the package is built in (and renamed from). */
  readonly dir: string;
  /** The calibration pass's persistent activation store. */
  readonly store: ActivationStore;
  /** The model being compressed. */
  readonly model: ModelHandle;
  readonly #progress: Progress;

  private constructor(dir: string, model: ModelHandle, progress: Progress) {
    this.dir = dir;
    this.model = model;
    this.#progress = progress;
    this.store = new ActivationStore(join(dir, ACTIVATIONS_DIR));
  }

  /**
   * Opens (or starts) the resumable build of package `out` from `model` with
   * `inputs` (everything else its bytes depend on, as JSON). Removes
   * the partial directories of other builds into `out` whose owner is dead,
   * and restarts this one from scratch when a listed shard fails to verify.
   *
   * @param onNotice told what was resumed or discarded (for the CLI's stderr)
   * @throws Error when a live process owns the directory
   */
  static open(
    out: string,
    model: ModelHandle,
    inputs: Record<string, unknown>,
    onNotice?: (message: string) => void,
  ): ResumableBuild {
    const key = buildKey(model, inputs);
    const dir = partialName(out, key);
    const prefix = `${basename(resolve(out))}.partial-`;
    for (const name of readdirSafe(dirname(dir))) {
      const other = join(dirname(dir), name);
      if (!name.startsWith(prefix) || other === dir) continue;
      const owner = readOwner(other);
      if (owner === undefined || !pidIsAlive(owner)) {
        rmSync(other, { recursive: true, force: true });
        onNotice?.(`removed "${other}", the unfinished build of other settings`);
      }
    }
    const owner = readOwner(dir);
    if (owner !== undefined && owner !== process.pid && pidIsAlive(owner)) {
      throw new Error(`Cannot build "${out}": process ${owner} is building it now in "${dir}"`);
    }
    removeStaleTemporariesIn(dir); // files a killed run was writing
    let progress = readProgress(dir, key);
    if (progress) {
      const bad = progress.blocks.find((b) => {
        const d = fileDigest(join(dir, b.shard.file));
        return !d || d.sha256 !== b.shard.sha256 || d.bytes !== b.shard.bytes;
      });
      if (bad) {
        onNotice?.(`shard "${bad.shard.file}" in "${dir}" does not match its record; starting the build over`);
        rmSync(dir, { recursive: true, force: true });
        progress = undefined;
      } else if (progress.blocks.length > 0) {
        onNotice?.(`resuming "${dir}": ${progress.blocks.length} block shards already written`);
      }
    }
    mkdirSync(dir, { recursive: true });
    writeFileAtomicSync(join(dir, OWNER_FILE), String(process.pid));
    const build = new ResumableBuild(dir, model, progress ?? { key, blocks: [] });
    if (!progress) build.#save();
    return build;
  }

  readonly #waiting = new Map<number, Array<() => void>>();

  /** The blocks whose shards are written, in writing order. */
  get blocks(): readonly WrittenBlock[] {
    return this.#progress.blocks;
  }

  /** Whether block `index`'s shard is written. */
  isDone(index: number): boolean {
    return this.#progress.blocks.some((b) => b.index === index);
  }

  /** The calibration loss, once the head's gradient has been computed (in this run or an earlier one). */
  get loss(): number | undefined {
    return this.#progress.loss;
  }

  /** Records the calibration loss. */
  recordLoss(loss: number): void {
    this.#progress.loss = loss;
    this.#save();
  }

  /** Records a written block shard (after its file is on disk), then runs what waited for it ({@link whenWritten}). */
  recordBlock(block: WrittenBlock): void {
    this.#progress.blocks = [...this.#progress.blocks.filter((b) => b.index !== block.index), block];
    this.#save();
    const waiting = this.#waiting.get(block.index) ?? [];
    this.#waiting.delete(block.index);
    for (const fn of waiting) fn();
  }

  /**
   * Runs `fn` once block `index`'s shard is recorded (at once when it is):
   * a pass whose blocks are compressed after it moved on (on a worker pool)
   * deletes a block's activations only then, so a rerun can still redo it
   * (a queued build its slice files, docs/DISTRIBUTED.md "Calibration
   * slices"). Several may wait on one block; they run in the order given.
   */
  whenWritten(index: number, fn: () => void): void {
    if (this.isDone(index)) fn();
    else this.#waiting.set(index, [...(this.#waiting.get(index) ?? []), fn]);
  }

  /** Removes the bookkeeping (activations, progress, owner), leaving only the package's files: just before commit. */
  finish(): void {
    this.store.close();
    for (const name of [ACTIVATIONS_DIR, PROGRESS_FILE, OWNER_FILE]) rmSync(join(this.dir, name), { recursive: true, force: true });
  }

  /** Removes the whole directory (an interrupted build that is not to be resumed). */
  discard(): void {
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  #save(): void {
    writeFileAtomicSync(join(this.dir, PROGRESS_FILE), JSON.stringify(this.#progress));
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** `progress.json` of `dir` when it exists and belongs to `key`. */
function readProgress(dir: string, key: string): Progress | undefined {
  try {
    const progress = JSON.parse(readFileSync(join(dir, PROGRESS_FILE), "utf8")) as Progress;
    return progress.key === key && Array.isArray(progress.blocks) ? progress : undefined;
  } catch {
    return undefined;
  }
}
