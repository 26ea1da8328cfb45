/**
 * Whole-file access for the io/ formats. Writes are crash-safe: a file or a
 * whole directory appears under its final name only once it is complete and
 * on disk (docs/DESIGN.md "Records and files": temp name, fsync, rename). Reads fail
 * with a CheckpointError naming the file. Knows no file formats; shards and
 * manifests build on it.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync } from "node:fs";
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pid } from "node:process";
import { CheckpointError, fileWriteError } from "./errors.ts";
import { writeFullySync } from "./read_fully.ts";

/**
 * A sibling name for `path` unique to this process: `<path>.<tag>-<pid>-<random>`.
 * The pid lets a later run remove it once this process is dead (src/io/stale_temps.ts).
 */
export function siblingName(path: string, tag: string): string {
  return join(dirname(path), `${basename(path)}.${tag}-${pid}-${randomBytes(4).toString("hex")}`);
}

/**
 * Reads a whole file, or throws a CheckpointError `Cannot read <what> "<path>":
 * file does not exist` (or the system's reason).
 *
 * @param what the kind of file for the message, e.g. "shard" or "manifest"
 */
export async function readWholeFile(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    const missing = (e as { code?: string }).code === "ENOENT";
    throw new CheckpointError(
      path,
      `Cannot read ${what} "${path}": ${missing ? "file does not exist" : (e as Error).message}`,
      { cause: e },
    );
  }
}

/** Fsyncs a directory so that renames and new entries inside it are durable. */
export async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Fsyncs a directory synchronously (see {@link syncDirectory}). */
function syncDirectorySync(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Content for {@link writeFileAtomicSync}: bytes, text, or a producer handed a `write` for each chunk. */
export type FileContent = string | Uint8Array | ((write: (chunk: Uint8Array) => void) => void);

/**
 * Writes `data` to `path` atomically: a temporary sibling is written and
 * fsynced, then renamed over `path`, then the directory is fsynced. Readers
 * see the old file or the new one, never a partial one. Creates the parent
 * directory if needed. Synchronous, so a streaming sink can finish a file
 * (and free its bytes) before the next block is loaded; a producer function
 * writes chunk by chunk, so the whole file never sits in memory.
 *
 * @throws CheckpointError naming `path` for a full disk, a directory in the
 *   way, a denied permission and the like (see `fileWriteError`)
 */
export function writeFileAtomicSync(path: string, data: FileContent): void {
  const temp = siblingName(path, "tmp");
  try {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(temp, "wx");
    try {
      const write = (bytes: Uint8Array) => writeFullySync(fd, bytes);
      if (typeof data === "function") data(write);
      else write(typeof data === "string" ? new TextEncoder().encode(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (e) {
    rmSync(temp, { force: true });
    throw fileWriteError(path, e);
  }
  syncDirectorySync(dirname(path));
}

/** {@link writeFileAtomicSync} as a promise, for async callers. */
export function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => resolve(writeFileAtomicSync(path, bytes)));
}

/** A directory being built under a temporary name; see {@link createDirectoryTransaction}. */
export interface DirectoryTransaction {
  /** The final directory path. */
  readonly dir: string;
  /** The temporary sibling (`<dir>.tmp-<pid>-<random>`) to write files into. */
  readonly temp: string;
  /** Fsyncs `temp` and renames it to `dir`, replacing an existing `dir` only then. */
  commit(): Promise<void>;
  /** Removes `temp`; `dir` is left as it was. */
  abort(): Promise<void>;
}

/**
 * Starts building directory `dir` under a temporary sibling name, so a crash
 * never leaves a half-written directory under the final name. The temporary
 * directory exists when this returns.
 *
 * `commit()` fsyncs the temporary directory (its files must already be
 * fsynced, as {@link writeFileAtomic} does) and renames it to `dir`. An
 * existing `dir` is first renamed aside to `<dir>.old-<pid>-<random>` and
 * removed after the new one is in place: POSIX rename cannot replace a
 * non-empty directory, so between the two renames `dir` is briefly absent; a
 * crash exactly then leaves the old directory under the `.old-` name and the
 * complete new one under the `.tmp-` name, never a partial one under `dir`.
 *
 * `existingTemp` names an existing directory to build in instead of a
 * fresh `.tmp-` sibling: a resumable build keeps its work there across runs
 * (src/io/build_resume.ts).
 *
 * @throws CheckpointError if `dir` exists and is not a directory (at commit),
 *   or naming `dir` when its temporary sibling cannot be created or renamed
 *   (a full disk, a denied permission: see `fileWriteError`)
 */
export function createDirectoryTransaction(dir: string, existingTemp?: string): DirectoryTransaction {
  const temp = existingTemp ?? siblingName(dir, "tmp");
  try {
    mkdirSync(dirname(dir), { recursive: true });
    if (!existingTemp) mkdirSync(temp);
  } catch (e) {
    throw fileWriteError(dir, e);
  }
  let state: "open" | "committed" | "aborted" = "open";
  const requireOpen = (action: string) => {
    if (state !== "open") throw new Error(`Cannot ${action} "${dir}": the transaction is already ${state}`);
  };
  return {
    dir,
    temp,
    async commit() {
      requireOpen("commit");
      await syncDirectory(temp);
      const existing = await stat(dir).catch(() => undefined);
      if (existing && !existing.isDirectory()) {
        throw new CheckpointError(dir, `Cannot replace "${dir}": the path exists and is not a directory`);
      }
      const old = existing ? siblingName(dir, "old") : undefined;
      if (old) await rename(dir, old).catch((e) => Promise.reject(fileWriteError(dir, e)));
      try {
        await rename(temp, dir);
      } catch (e) {
        if (old) await rename(old, dir);
        throw fileWriteError(dir, e);
      }
      await syncDirectory(dirname(dir));
      state = "committed";
      if (old) await rm(old, { recursive: true, force: true });
    },
    async abort() {
      requireOpen("abort");
      state = "aborted";
      await rm(temp, { recursive: true, force: true });
    },
  };
}
