/**
 * Removal of temporaries that a killed process left behind (docs/GUARANTEES.md
 * "Stale temporaries"). Every temporary name embeds its writer's pid: the
 * siblings of an output (`<path>.tmp-<pid>-<hex>`, `<path>.old-<pid>-<hex>`,
 * src/io/atomic.ts) and the activation stores (`offtune-activations-<pid>-*`
 * in `os.tmpdir()`, src/io/activation_store.ts). A verb calls
 * {@link removeStaleTemporaries} as it starts: what belongs to a pid that is
 * no longer alive is removed; what belongs to a live process (another build
 * running now) is never touched.
 *
 * @module
 */
import { readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";

/** Prefix of an activation store's directory in `os.tmpdir()`; the writer's pid follows. */
export const ACTIVATIONS_PREFIX = "offtune-activations-";

/** Whether process `pid` exists (signal 0 probes without sending; EPERM means it exists under another user). */
export function pidIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const exists = (path: string) => {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
};

/** One temporary suffix `.<tag>-<pid>-<hex>` (src/io/atomic.ts `siblingName`); groups: tag, pid. */
const TEMP_SUFFIX = String.raw`\.(tmp|old)-(\d+)-[0-9a-f]+`;

/**
 * Removes the temporary siblings of `path` whose writer is dead: `.tmp-`
 * ones always; `.old-` ones (the previous version, renamed aside during a
 * commit) only when `path` itself exists, since otherwise the old version is
 * all that is left of it. A temporary of a temporary (`<path>.tmp-A.tmp-B`:
 * a directory written atomically into a directory that is itself being
 * built, as pretrain's first checkpoint is) goes when all its writers are
 * dead. Returns the removed paths.
 */
export function removeStaleSiblings(path: string): string[] {
  const full = resolve(path);
  const pattern = new RegExp(`^${escape(basename(full))}((?:${TEMP_SUFFIX})+)$`);
  const removed: string[] = [];
  for (const name of entries(dirname(full))) {
    const m = pattern.exec(name);
    if (!m) continue;
    const writers = [...m[1].matchAll(new RegExp(TEMP_SUFFIX, "g"))]; // outermost first
    if (writers.some((w) => pidIsAlive(Number(w[2])))) continue;
    if (writers.length === 1 && writers[0][1] === "old" && !exists(full)) continue;
    const stale = join(dirname(full), name);
    rmSync(stale, { recursive: true, force: true });
    removed.push(stale);
  }
  return removed;
}

/**
 * Removes the entries of directory `dir` named `<name>.tmp-<pid>-<hex>` whose
 * writer is dead: the files a killed process was writing inside a directory
 * that outlives it (a resumable build's, src/io/build_resume.ts).
 * Returns the removed paths.
 */
export function removeStaleTemporariesIn(dir: string): string[] {
  const removed: string[] = [];
  for (const name of entries(dir)) {
    const m = new RegExp(`${TEMP_SUFFIX}$`).exec(name);
    if (!m || m[1] !== "tmp" || pidIsAlive(Number(m[2]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/** Removes the activation stores in `dir` (default `os.tmpdir()`) whose writer is dead; returns the removed paths. */
export function removeStaleActivationStores(dir = tmpdir()): string[] {
  const pattern = new RegExp(`^${escape(ACTIVATIONS_PREFIX)}(\\d+)-`);
  const removed: string[] = [];
  for (const name of entries(dir)) {
    const m = pattern.exec(name);
    if (!m || pidIsAlive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/**
 * What a verb calls as it starts: removes the stale siblings of each output
 * path and the stale activation stores. Returns the removed paths.
 */
export function removeStaleTemporaries(outputs: readonly string[]): string[] {
  return [...outputs.flatMap(removeStaleSiblings), ...removeStaleActivationStores()];
}
