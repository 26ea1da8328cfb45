/**
 * Emulator and adapter packages: a directory of shards plus
 * `manifest.msgpack`, which lists every shard with its size and SHA-256, the
 * architecture and its config, the adapter/emulator split and the method's
 * settings (docs/DESIGN.md "Records and files"; docs/METHOD.md for the split).
 *
 * A package is written through {@link createPackageWriter}, which builds it in
 * a temporary sibling directory and renames it into place on commit, so a crash
 * never leaves a half-written package under the final name. Readers validate
 * the manifest field by field and {@link verifyPackage} checks every shard
 * against it before a later stage trusts the files: size and SHA-256, and
 * what the shard says of itself (block, role, source model, config, the
 * positions a shared block runs at, tensor names, shapes and dtypes) against
 * what the manifest says of it, so an edited manifest does not silently run
 * the wrong shard, config or model, nor a shared block at other positions
 * (docs/GUARANTEES.md "What is verified").
 *
 * The manifest is MessagePack (msgpackr) with records off, so any MessagePack
 * reader sees plain maps; `moreTypes` keeps typed arrays in `extra` intact
 * (the default encoding corrupts Float32Array).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { createDirectoryTransaction, readWholeFile, writeFileAtomic } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import { readShardHeader, type ShardHeader } from "./shard_reader.ts";
import {
  blockRoleProblem,
  configSha256,
  isShape,
  type ShardDtype,
  type ShardMeta,
  type ShardRole,
  type ShardTensorInput,
} from "./shard_schema.ts";
import { type ShardWriteOptions, writeShardFile, type WrittenShard } from "./shard_writer.ts";

/**
 * The manifest format version this module writes for a package whose blocks
 * each run once. Version 2 lists each shard's tensors (name, shape, dtype),
 * which the shard restates and {@link verifyPackage} compares.
 */
export const MANIFEST_FORMAT_VERSION = 2;

/**
 * The manifest format version of an emulator that shares blocks (CRaSh,
 * docs/METHOD.md §3 "CRaSh"; docs/SHARDS.md): its `blockIndices` may repeat
 * a middle block at consecutive positions, the block's one shard running at
 * each. Written only for such packages, so that offtune versions reading
 * version 2 keep reading every other package and refuse a shared one by its
 * version instead of running it wrong. This module reads versions 2 and 3.
 */
export const SHARED_BLOCKS_FORMAT_VERSION = 3;

/**
 * The positions a block runs at in an emulator whose `blockIndices` share
 * it (the positions `p` with `blockIndices[p] === block`), or undefined
 * when it runs at one position or none: what the block's shard states of
 * itself as `positions` (`ShardMeta`), and {@link verifyPackage} compares.
 */
export function sharedPositions(blockIndices: readonly number[] | undefined, block: number | "outer"): number[] | undefined {
  const positions = (blockIndices ?? []).flatMap((b, p) => (b === block ? [p] : []));
  return positions.length > 1 ? positions : undefined;
}

/** Whether a block of `blockIndices` repeats at the next position (a shared block). */
const sharesBlock = (blockIndices: readonly unknown[]) => blockIndices.some((b, i) => i > 0 && b === blockIndices[i - 1]);

/** The format version a manifest with `blockIndices` needs: {@link SHARED_BLOCKS_FORMAT_VERSION} when a block repeats. */
export function manifestFormatVersion(blockIndices: readonly number[] | undefined): Manifest["formatVersion"] {
  return blockIndices && sharesBlock(blockIndices) ? SHARED_BLOCKS_FORMAT_VERSION : MANIFEST_FORMAT_VERSION;
}

/** File name of the manifest inside a package directory. */
export const MANIFEST_FILE = "manifest.msgpack";

/** One shard as the manifest lists it. */
export interface ManifestShard {
  /** File name inside the package directory (no path separators). */
  file: string;
  block: number | "outer";
  role: ShardRole;
  /** SHA-256 of the file, lowercase hex. */
  sha256: string;
  /** File size in bytes. */
  bytes: number;
  /** The shard's tensors in column order, as its schema declares them. */
  tensors: ManifestTensor[];
}

/** One tensor of a shard as the manifest lists it. */
export interface ManifestTensor {
  name: string;
  shape: number[];
  dtype: ShardDtype;
}

/** The contents of `manifest.msgpack`. */
export interface Manifest {
  /** The manifest format version (docs/SHARDS.md): 3 when `blockIndices` shares a block, else 2. */
  formatVersion: typeof MANIFEST_FORMAT_VERSION | typeof SHARED_BLOCKS_FORMAT_VERSION;
  /** Whether the package is an emulator or a tuned adapter. */
  kind: "emulator" | "adapter";
  /** The source config's `model_type` (e.g. "opt"). */
  architecture: string;
  /** The source checkpoint's config.json. */
  config: Record<string, unknown>;
  /** Adapter blocks kept at the bottom and at the top (docs/METHOD.md: adapter/emulator split). */
  split: { bottom: number; top: number };
  /**
   * Emulators that drop or share blocks (OT LayerDrop, CRaSh: docs/METHOD.md
   * §3) only: the original index of the block each position of the emulator
   * runs, in forward order, each with its shard. Increasing in version 2;
   * in version 3 a middle block may repeat at consecutive positions (one
   * shard, run at each). Absent: every block `0..L-1` (GradOT and older packages).
   */
  blockIndices?: number[];
  /** The method that produced the package (`gradot`, `ot-layerdrop`, a tuning method). */
  method: string;
  /** The method's settings, JSON values only. */
  settings: Record<string, unknown>;
  /** Hash identifying the source checkpoint; every shard carries the same. */
  sourceHash: string;
  /** Every shard of the package with its size and SHA-256. */
  shards: ManifestShard[];
  /** ISO 8601 time of writing. */
  createdAt: string;
  /** Anything else the writer records (e.g. parameter counts per block). */
  extra?: Record<string, unknown>;
}

const packr = new Packr({ useRecords: false, moreTypes: true });

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Whether `value` is a plain object (what MessagePack maps decode to), not an array, typed array or class. */
function isObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** Whether `file` is a plain file name that stays inside the package directory. */
function isPlainFileName(file: unknown): file is string {
  return typeof file === "string" && file !== "" && file !== "." && file !== ".." && !/[/\\\0]/.test(file);
}

/**
 * Checks a manifest's `blockIndices` against its kind, version and shards;
 * `fail` throws. A repeated block (version 3 only) must repeat at
 * consecutive positions and be a middle block: adapter blocks are never
 * shared, so an adapter tuned on the emulator has one block per position.
 */
function validateBlockIndices(
  value: unknown,
  m: { kind: Manifest["kind"]; formatVersion: Manifest["formatVersion"]; shards: readonly ManifestShard[] },
  fail: (problem: string) => never,
): void {
  if (m.kind !== "emulator") fail(`"blockIndices" belongs to emulator packages, this is an ${m.kind} package`);
  const order = m.formatVersion === SHARED_BLOCKS_FORMAT_VERSION ? "non-decreasing" : "increasing";
  const ordered = Array.isArray(value) && value.length > 0 &&
    value.every((b, i) => isCount(b) && (i === 0 || b > value[i - 1] || (order === "non-decreasing" && b === value[i - 1])));
  if (!ordered) {
    const repeats = Array.isArray(value) && sharesBlock(value) && order === "increasing";
    fail(
      `"blockIndices" must be a non-empty list of ${order} block indices, got ${JSON.stringify(value)}` +
        (repeats ? ` (a shared block needs format version ${SHARED_BLOCKS_FORMAT_VERSION})` : ""),
    );
  }
  const listed = new Set(value as number[]);
  const stored = new Map(m.shards.flatMap((s) => (s.block === "outer" ? [] : [[s.block, s] as const])));
  const unstored = [...listed].filter((b) => !stored.has(b));
  if (unstored.length > 0) fail(`"blockIndices" lists block ${unstored.join(", ")} but no shard holds it`);
  const unlisted = [...stored.keys()].filter((b) => !listed.has(b));
  if (unlisted.length > 0) fail(`a shard holds block ${unlisted.join(", ")}, which "blockIndices" does not list`);
  const shared = (value as number[]).find((b, i, all) => i > 0 && b === all[i - 1] && stored.get(b)!.role !== "middle");
  if (shared !== undefined) {
    fail(`"blockIndices" runs block ${shared} at several positions, but its shard "${stored.get(shared)!.file}" holds an ${stored.get(shared)!.role} block (only middle blocks are shared)`);
  }
}

/**
 * Checks that `value` is a complete, supported manifest.
 *
 * @param source the manifest path named in errors
 * @throws CheckpointError naming `source` and the first bad field
 */
function validateManifest(value: unknown, source: string): Manifest {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Invalid manifest "${source}": ${problem}`);
  };
  if (!isObject(value)) fail("expected a map at the top level");
  const m = value as Record<string, unknown>;
  if (m.formatVersion !== MANIFEST_FORMAT_VERSION && m.formatVersion !== SHARED_BLOCKS_FORMAT_VERSION) {
    fail(
      `unsupported format version ${
        JSON.stringify(m.formatVersion)
      } (this offtune reads versions ${MANIFEST_FORMAT_VERSION} and ${SHARED_BLOCKS_FORMAT_VERSION})`,
    );
  }
  if (m.kind !== "emulator" && m.kind !== "adapter") {
    fail(`"kind" must be "emulator" or "adapter", got ${JSON.stringify(m.kind)}`);
  }
  for (const key of ["architecture", "method", "sourceHash", "createdAt"]) {
    if (typeof m[key] !== "string") fail(`"${key}" must be a string, got ${JSON.stringify(m[key])}`);
  }
  if (Number.isNaN(Date.parse(m.createdAt as string))) {
    fail(`"createdAt" is not a date: ${JSON.stringify(m.createdAt)}`);
  }
  for (const key of ["config", "settings"]) {
    if (!isObject(m[key])) fail(`"${key}" must be a map`);
  }
  if (m.extra !== undefined && !isObject(m.extra)) fail(`"extra" must be a map when present`);
  const split = m.split as Record<string, unknown>;
  if (!isObject(split) || !isCount(split.bottom) || !isCount(split.top)) {
    fail(`"split" must be {bottom, top} with non-negative integers, got ${JSON.stringify(m.split)}`);
  }
  if (!Array.isArray(m.shards)) fail(`"shards" must be a list`);
  const files = new Set<string>();
  (m.shards as unknown[]).forEach((entry, i) => {
    const at = `shards[${i}]`;
    if (!isObject(entry)) return fail(`${at} must be a map`);
    if (!isPlainFileName(entry.file)) fail(`${at}.file must be a plain file name, got ${JSON.stringify(entry.file)}`);
    if (entry.file === MANIFEST_FILE || files.has(entry.file as string)) {
      fail(
        `${at}.file "${entry.file}" is ${entry.file === MANIFEST_FILE ? "the manifest's own name" : "listed twice"}`,
      );
    }
    files.add(entry.file as string);
    const problem = blockRoleProblem(entry.block, entry.role);
    if (problem) fail(`${at} (${entry.file}): ${problem}`);
    if (typeof entry.sha256 !== "string" || !SHA256_HEX.test(entry.sha256)) {
      fail(`${at}.sha256 must be 64 lowercase hex digits, got ${JSON.stringify(entry.sha256)}`);
    }
    if (!isCount(entry.bytes)) fail(`${at}.bytes must be a non-negative integer, got ${JSON.stringify(entry.bytes)}`);
    if (!Array.isArray(entry.tensors)) fail(`${at}.tensors must be a list`);
    (entry.tensors as unknown[]).forEach((t, j) => {
      const ok = isObject(t) && typeof t.name === "string" && isShape(t.shape) && (t.dtype === "float32" || t.dtype === "float16");
      if (!ok) fail(`${at}.tensors[${j}] must be {name, shape, dtype: "float32" | "float16"}, got ${JSON.stringify(t)}`);
    });
  });
  if (m.blockIndices !== undefined) validateBlockIndices(m.blockIndices, m as unknown as Manifest, fail);
  return m as unknown as Manifest;
}

/**
 * Writes `<dir>/manifest.msgpack` atomically after validating `m`.
 *
 * @throws CheckpointError if `m` is not a valid manifest
 */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  const path = join(dir, MANIFEST_FILE);
  validateManifest(m, path);
  await writeFileAtomic(path, packr.pack(m));
}

/**
 * Reads and validates `<dir>/manifest.msgpack`.
 *
 * @throws CheckpointError naming the manifest path when it is missing, not
 *   MessagePack, of an unsupported format version, or lacks a valid field
 */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  const bytes = await readWholeFile(path, "manifest");
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (e) {
    throw new CheckpointError(path, `Cannot read manifest "${path}": not valid MessagePack (${(e as Error).message})`, {
      cause: e,
    });
  }
  return validateManifest(value, path);
}

/** SHA-256 of a file as lowercase hex, streamed so a large shard is never held whole. */
async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Uint8Array);
  return hash.digest("hex");
}

/** A shard's part as messages name it: `block 3 (adapter)` or `the outer weights`. */
function describePart(block: number | "outer", role: ShardRole): string {
  return block === "outer" ? "the outer weights" : `block ${block} (${role})`;
}

const formatTensor = (t: ManifestTensor) => `"${t.name}" [${t.shape.join(", ")}] ${t.dtype}`;

/**
 * Why a shard's own header disagrees with its manifest entry, or undefined:
 * its block and role, source model, config, the positions a shared block
 * runs at, and tensors (names in order, shapes, dtypes).
 */
function shardHeaderProblem(header: ShardHeader, entry: ManifestShard, manifest: Manifest, manifestPath: string): string | undefined {
  const { meta } = header;
  if (meta.block !== entry.block || meta.role !== entry.role) {
    return `holds ${describePart(meta.block, meta.role)}, but "${manifestPath}" lists it as ${describePart(entry.block, entry.role)}`;
  }
  if (meta.sourceHash !== manifest.sourceHash) {
    return `was written from model ${meta.sourceHash}, but "${manifestPath}" names model ${manifest.sourceHash}`;
  }
  const config = configSha256(manifest.config);
  if (meta.configHash !== config) {
    return `was written for a config with sha256 ${meta.configHash}, but the config in "${manifestPath}" has sha256 ${config} ` +
      `(the manifest's config was edited, or the shard is from another package)`;
  }
  const where = (p: number[] | undefined) => (p ? `positions ${p.join(", ")}` : "one position");
  const [own, manifests] = [where(meta.positions), where(sharedPositions(manifest.blockIndices, entry.block))];
  if (own !== manifests) return `runs at ${own} by its own header, but "${manifestPath}" runs it at ${manifests}`;
  const n = Math.max(header.tensors.length, entry.tensors.length);
  for (let i = 0; i < n; i++) {
    const held = header.tensors[i];
    const listed = entry.tensors[i];
    if (!held) return `holds ${header.tensors.length} tensors, but "${manifestPath}" lists ${entry.tensors.length}; the first missing is ${formatTensor(listed)}`;
    if (!listed) return `holds ${header.tensors.length} tensors, but "${manifestPath}" lists ${entry.tensors.length}; the first unlisted is ${formatTensor(held)}`;
    if (held.name !== listed.name || held.shape.join() !== listed.shape.join() || held.dtype !== listed.dtype) {
      return `holds tensor ${formatTensor(held)} where "${manifestPath}" lists ${formatTensor(listed)}`;
    }
  }
  return undefined;
}

/**
 * Checks a package on disk against its manifest: every listed shard exists,
 * has the listed size and SHA-256, and says of itself what the manifest says
 * of it (its header: block, role, source hash, config hash, the positions a
 * shared block runs at, tensor names, shapes and dtypes). Only each shard's
 * footer is decoded here; values are read when a stage asks for the block.
 *
 * @returns the validated manifest
 * @throws CheckpointError naming the file: a missing shard, a size mismatch,
 *   a corrupt shard (giving both the actual and the listed hash), or a shard
 *   whose header disagrees with the manifest (naming both sides)
 */
export async function verifyPackage(dir: string): Promise<Manifest> {
  const manifest = await readManifest(dir);
  const manifestPath = join(dir, MANIFEST_FILE);
  for (const shard of manifest.shards) {
    const path = join(dir, shard.file);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) {
      throw new CheckpointError(path, `Package "${dir}" is missing shard "${shard.file}" listed in its manifest`);
    }
    if (info.size !== shard.bytes) {
      throw new CheckpointError(path, `Shard "${path}" has ${info.size} bytes but the manifest lists ${shard.bytes}`);
    }
    const actual = await sha256OfFile(path);
    if (actual !== shard.sha256) {
      throw new CheckpointError(
        path,
        `Shard "${path}" is corrupt: its sha256 is ${actual} but the manifest lists ${shard.sha256}`,
      );
    }
    const problem = shardHeaderProblem(await readShardHeader(path), shard, manifest, manifestPath);
    if (problem) throw new CheckpointError(path, `Shard "${path}" ${problem}`);
  }
  return manifest;
}

/** The conventional shard file name of a block: `block-0007.arrow`, or `outer.arrow`. */
export function shardFileName(block: number | "outer"): string {
  return block === "outer" ? "outer.arrow" : `block-${String(block).padStart(4, "0")}.arrow`;
}

/** A package being written; see {@link createPackageWriter}. */
export interface PackageWriter {
  /** The final package directory. */
  readonly dir: string;
  /** The temporary sibling directory the shards go to until commit. */
  readonly temp: string;
  /**
   * Writes one shard (named `file`, default {@link shardFileName}) into the
   * temporary directory and records its manifest entry. Synchronous, like
   * `writeShardFile`: the shard is on disk when it returns.
   */
  writeShard(
    meta: ShardMeta,
    tensors: readonly ShardTensorInput[],
    options?: ShardWriteOptions & { file?: string },
  ): ManifestShard;
  /**
   * Records the manifest entry of a shard another thread wrote into the
   * temporary directory (`writeShardFile` at `temp`/`file`, default
   * {@link shardFileName}, with `meta` and tensors of these names and
   * shapes): `written` is what that write returned. The entry is listed
   * where it is recorded, as if written now.
   *
   * @throws CheckpointError naming the file when it is missing or its size is not `written.bytes`
   */
  adoptShard(
    meta: ShardMeta,
    tensors: ReadonlyArray<{ name: string; shape: readonly number[] }>,
    written: Omit<WrittenShard, "path">,
    options?: { dtype?: ShardDtype; file?: string },
  ): ManifestShard;
  /**
   * Writes the manifest (its `shards` are the ones written, in order) and
   * renames the package into place, replacing an existing `dir` only now.
   */
  commit(manifest: Omit<Manifest, "shards">): Promise<Manifest>;
  /** Removes the temporary directory; an existing `dir` is untouched. */
  abort(): Promise<void>;
}

/** A package whose writing an earlier run began: its directory and the shards already in it (verified). */
export interface ResumedPackage {
  /** The existing directory the package is built in, instead of a fresh temporary one. */
  temp: string;
  /** Manifest entries of the shards already written there, in writing order. */
  shards: readonly ManifestShard[];
  /** The source hash those shards were written with. */
  sourceHash: string;
}

/**
 * Starts writing a package to `dir` atomically (or, given `resume`, goes on
 * writing one an earlier run began): shards go to
 * `<dir>.tmp-<pid>-<random>`, and `commit` fsyncs and renames that directory
 * into place (see `createDirectoryTransaction` in `atomic.ts`). Callers abort
 * on failure: `try { …; await w.commit(m) } catch (e) { await w.abort(); throw e }`.
 */
export function createPackageWriter(dir: string, resume?: ResumedPackage): PackageWriter {
  const transaction = createDirectoryTransaction(dir, resume?.temp);
  const shards: ManifestShard[] = (resume?.shards ?? []).map((s) => ({ ...s }));
  const sourceHashes = new Map<string, string>(shards.map((s) => [s.file, resume!.sourceHash]));
  const configHashes = new Map<string, string>();
  /** The shard's file name (`file`, default {@link shardFileName}), checked to be one a shard may take. */
  const freeFileName = (meta: ShardMeta, file = shardFileName(meta.block)): string => {
    const fail = (problem: string): never => {
      throw new CheckpointError(dir, `Cannot write shard ${JSON.stringify(file)} to package "${dir}": ${problem}`);
    };
    if (!isPlainFileName(file)) fail("not a plain file name");
    if (file === MANIFEST_FILE) fail("the name is reserved for the manifest");
    if (shards.some((s) => s.file === file)) fail("a shard of that name was already written");
    return file;
  };
  /** Adds a written shard's manifest entry; returns a copy. */
  const record = (
    file: string,
    meta: ShardMeta,
    tensors: ReadonlyArray<{ name: string; shape: readonly number[] }>,
    written: Omit<WrittenShard, "path">,
    dtype: ShardDtype = "float32",
  ): ManifestShard => {
    const entry: ManifestShard = {
      file,
      block: meta.block,
      role: meta.role,
      sha256: written.sha256,
      bytes: written.bytes,
      tensors: tensors.map((t) => ({ name: t.name, shape: [...t.shape], dtype })),
    };
    shards.push(entry);
    sourceHashes.set(file, meta.sourceHash);
    configHashes.set(file, meta.configHash);
    return structuredClone(entry);
  };
  return {
    dir,
    temp: transaction.temp,
    writeShard(meta, tensors, options = {}) {
      const file = freeFileName(meta, options.file);
      return record(file, meta, tensors, writeShardFile(join(transaction.temp, file), meta, tensors, options), options.dtype);
    },
    adoptShard(meta, tensors, written, options = {}) {
      const file = freeFileName(meta, options.file);
      const path = join(transaction.temp, file);
      let size: number | undefined;
      try {
        size = statSync(path).size;
      } catch {
        // no such file: reported below
      }
      if (size !== written.bytes) {
        const found = size === undefined ? "there is no such file" : `the file has ${size} bytes, not ${written.bytes}`;
        throw new CheckpointError(path, `Cannot adopt shard ${JSON.stringify(file)} into package "${dir}": ${found}`);
      }
      return record(file, meta, tensors, written, options.dtype);
    },
    async commit(draft) {
      const expected = [["source hash", sourceHashes, draft.sourceHash], ["config hash", configHashes, configSha256(draft.config)]] as const;
      for (const [what, byFile, manifest] of expected) {
        for (const [file, shard] of byFile) {
          if (shard !== manifest) {
            throw new CheckpointError(
              dir,
              `Cannot commit package "${dir}": shard "${file}" has ${what} ${JSON.stringify(shard)} but the manifest has ${JSON.stringify(manifest)}`,
            );
          }
        }
      }
      const manifest: Manifest = { ...draft, shards: shards.map((s) => structuredClone(s)) };
      await writeManifest(transaction.temp, manifest);
      await transaction.commit();
      return manifest;
    },
    abort: () => transaction.abort(),
  };
}
