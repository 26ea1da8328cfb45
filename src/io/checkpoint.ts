/**
 * Hugging Face checkpoint directories: `config.json` plus either
 * `model.safetensors` or a sharded `model.safetensors.index.json`
 * (docs/DESIGN.md "Models": fp32, fp16 and bf16 read, read lazily per block).
 *
 * Opening reads only config.json, the index and each shard's header; a tensor's
 * bytes are read when {@link CheckpointReader.read} asks for it. Saving streams
 * tensors a shard at a time into a temporary sibling directory, fsyncs every
 * file, and renames, so no half-written file ever appears under a final name.
 *
 * @module
 */
import { readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { createDirectoryTransaction, syncDirectory, writeFileAtomic } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import {
  elementCount,
  encodeFromF32,
  type EncodedTensor,
  isStoredDtype,
  type StoredDtype,
} from "./safetensors.ts";
import { openSafetensors, type SafetensorsFile, writeSafetensors } from "./safetensors_file.ts";
import { firstNonFinite, shapeSize } from "./shard_schema.ts";

export type { StoredDtype } from "./safetensors.ts";

/** File names of the Hugging Face layout. */
const CONFIG = "config.json";
const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Hugging Face's default `max_shard_size` ("5GB"), used when the caller sets none.
 */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/** One stored tensor: its name, stored dtype, shape, and the full path of its file. */
export interface TensorInfo {
  /** Tensor name as stored (Hugging Face naming). */
  name: string;
  /** Element type as stored in the file. */
  dtype: StoredDtype;
  /** Shape as stored (PyTorch layout). */
  shape: number[];
  /** Full path of the safetensors file holding it. */
  file: string;
}

/** An open checkpoint whose tensors are read one at a time, on demand. */
export interface CheckpointReader {
  /** The checkpoint directory. */
  dir: string;
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /** All tensors across shards: shards in file-name order, each in header order. */
  tensors(): TensorInfo[];
  /** The tensor's info; throws a CheckpointError naming the weights file if absent. */
  info(name: string): TensorInfo;
  /**
   * The tensor converted to float32. Unless `scanNonFinite: false` was given
   * to {@link openCheckpoint}, throws a CheckpointError naming the tensor,
   * file and first index holding NaN or ±Inf.
   */
  read(name: string): Promise<Float32Array>;
  /**
   * Rows `[start, start + count)` of the tensor's first axis as float32, read
   * synchronously and scanned like {@link read}: streams a vocabulary matrix,
   * or a weight block by block. With `out` the values land in its front (a
   * view of them is returned), so a sweep reuses one buffer.
   */
  readRowsSync(name: string, start: number, count: number, out?: Float32Array): Float32Array;
  /** Closes the shard files; the reader is unusable afterwards. */
  close(): Promise<void>;
}

/** A tensor to save: float32 data in row-major order for `shape`. */
export interface TensorToSave {
  /** Tensor name (Hugging Face naming). */
  name: string;
  /** Shape to store. */
  shape: number[];
  /** Float32 values, row-major for `shape`. */
  data: Float32Array;
}

async function isDirectory(path: string): Promise<boolean | undefined> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return (await isDirectory(path)) !== undefined;
}

async function readJsonObject(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new CheckpointError(path, `Cannot read ${what} "${path}": ${(e as Error).message}`, { cause: e });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `Cannot read ${what} "${path}": invalid JSON (${(e as Error).message})`, {
      cause: e,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CheckpointError(path, `Cannot read ${what} "${path}": expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** The index's weight_map, checked to map names to plain file names in the directory. */
async function readWeightMap(indexPath: string): Promise<Map<string, string>> {
  const index = await readJsonObject(indexPath, "checkpoint index");
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new CheckpointError(indexPath, `Cannot read checkpoint index "${indexPath}": missing "weight_map" object`);
  }
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string" || file === "" || basename(file) !== file || file === "..") {
      throw new CheckpointError(
        indexPath,
        `Cannot read checkpoint index "${indexPath}": tensor "${name}" maps to ${JSON.stringify(file)}, not a file name`,
      );
    }
    out.set(name, file);
  }
  return out;
}

/**
 * Opens a Hugging Face checkpoint directory, reading config.json, the shard
 * index if any, and each safetensors header (never tensor data).
 *
 * @param options.scanNonFinite check every tensor read for NaN/Inf (default true)
 * @throws CheckpointError naming the path for a missing directory, config or
 *   weights file, a malformed header, an index that disagrees with its shards,
 *   or a dtype other than F32, F16, BF16
 */
export async function openCheckpoint(
  dir: string,
  options: { scanNonFinite?: boolean } = {},
): Promise<CheckpointReader> {
  const scan = options.scanNonFinite ?? true;
  const isDir = await isDirectory(dir);
  if (isDir === undefined) {
    throw new CheckpointError(dir, `Cannot open checkpoint "${dir}": directory does not exist`);
  }
  if (!isDir) throw new CheckpointError(dir, `Cannot open checkpoint "${dir}": not a directory`);
  const configPath = join(dir, CONFIG);
  if (!(await exists(configPath))) {
    throw new CheckpointError(configPath, `Cannot open checkpoint "${dir}": missing "${configPath}"`);
  }
  const config = await readJsonObject(configPath, "config");

  const indexPath = join(dir, INDEX);
  const singlePath = join(dir, SINGLE);
  let weightMap: Map<string, string> | undefined;
  let weightsPath: string;
  let shardNames: string[];
  if (await exists(indexPath)) {
    weightMap = await readWeightMap(indexPath);
    weightsPath = indexPath;
    shardNames = [...new Set(weightMap.values())].sort();
  } else if (await exists(singlePath)) {
    weightsPath = singlePath;
    shardNames = [SINGLE];
  } else {
    throw new CheckpointError(
      singlePath,
      `Cannot open checkpoint "${dir}": neither "${singlePath}" nor "${indexPath}" exists`,
    );
  }

  const shards: SafetensorsFile[] = [];
  try {
    for (const shard of shardNames) shards.push(await openSafetensors(join(dir, shard)));
    const infos = collectInfos(shards, shardNames, weightMap, indexPath);
    return checkpointReader(dir, config, shards, infos, weightsPath, scan);
  } catch (e) {
    await Promise.all(shards.map((s) => s.close()));
    throw e;
  }
}

/** Lists tensors and checks the index (if any) against the shard headers. */
function collectInfos(
  shards: SafetensorsFile[],
  shardNames: string[],
  weightMap: Map<string, string> | undefined,
  indexPath: string,
): Map<string, { info: TensorInfo; shard: SafetensorsFile }> {
  const infos = new Map<string, { info: TensorInfo; shard: SafetensorsFile }>();
  shards.forEach((shard, i) => {
    for (const e of shard.header.entries) {
      if (!isStoredDtype(e.dtype)) {
        throw new CheckpointError(
          shard.path,
          `Cannot read "${shard.path}": tensor "${e.name}" has dtype ${e.dtype}; offtune reads F32, F16 and BF16`,
        );
      }
      const mapped = weightMap?.get(e.name);
      if (weightMap && mapped !== shardNames[i]) {
        throw new CheckpointError(
          indexPath,
          `Cannot read checkpoint index "${indexPath}": tensor "${e.name}" is stored in "${shardNames[i]}" but the index ` +
            (mapped === undefined ? "does not list it" : `maps it to "${mapped}"`),
        );
      }
      infos.set(e.name, { info: { name: e.name, dtype: e.dtype, shape: e.shape, file: shard.path }, shard });
    }
  });
  for (const [name, file] of weightMap ?? []) {
    if (!infos.has(name)) {
      throw new CheckpointError(
        indexPath,
        `Cannot read checkpoint index "${indexPath}": tensor "${name}" is mapped to "${file}", which does not contain it`,
      );
    }
  }
  return infos;
}

function checkpointReader(
  dir: string,
  config: Record<string, unknown>,
  shards: SafetensorsFile[],
  infos: Map<string, { info: TensorInfo; shard: SafetensorsFile }>,
  weightsPath: string,
  scan: boolean,
): CheckpointReader {
  /** `data` (values of `name` from flat index `offset` on), or an error at its first NaN/±Inf when scanning. */
  const scanned = (file: string, name: string, data: Float32Array, offset: number): Float32Array => {
    const bad = scan ? firstNonFinite(data) : -1;
    if (bad >= 0) {
      throw new CheckpointError(
        file,
        `Tensor "${name}" in "${file}" holds ${data[bad]} at flat index ${offset + bad} (first non-finite value)`,
      );
    }
    return data;
  };
  const find = (name: string) => {
    const found = infos.get(name);
    if (!found) {
      throw new CheckpointError(weightsPath, `Cannot find tensor "${name}" in checkpoint "${weightsPath}"`);
    }
    return found;
  };
  return {
    dir,
    config,
    tensors: () => [...infos.values()].map(({ info }) => ({ ...info, shape: [...info.shape] })),
    info: (name) => {
      const { info } = find(name);
      return { ...info, shape: [...info.shape] };
    },
    async read(name) {
      const { shard } = find(name);
      return scanned(shard.path, name, await shard.readF32(name), 0);
    },
    readRowsSync(name, start, count, out) {
      const { shard, info } = find(name);
      const rowValues = shapeSize(info.shape.slice(1));
      return scanned(shard.path, name, shard.readRowsF32Sync(name, start, count, out), start * rowValues);
    },
    async close() {
      await Promise.all(shards.map((s) => s.close()));
    },
  };
}

/**
 * Saves tensors as a Hugging Face checkpoint: `config.json` and either
 * `model.safetensors` or, once the data exceeds `maxShardBytes`, shards
 * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`
 * (HF's names and index format). A tensor larger than `maxShardBytes` gets a
 * shard of its own, as in HF.
 *
 * Tensors are consumed one at a time; at most one shard's encoded bytes are
 * held in memory. Everything is written into a temporary sibling directory and
 * fsynced. If `dir` does not exist, the temporary directory is renamed to it
 * (atomic). If it exists, each file is renamed into it (each file atomic),
 * stale weight files of an earlier save are removed first, and config.json is
 * renamed last; other files in `dir` (a tokenizer, say) are left alone.
 *
 * @param options.dtype stored dtype, default F32 (F16/BF16 round to nearest even)
 * @param options.maxShardBytes shard size limit in data bytes, default {@link DEFAULT_MAX_SHARD_BYTES}
 * @param options.metadata `__metadata__` for every shard header; `format: "pt"`
 *   is added unless given, since transformers requires it
 */
export async function saveCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  tensors: Iterable<TensorToSave> | AsyncIterable<TensorToSave>,
  options: { dtype?: StoredDtype; maxShardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<void> {
  const dtype = options.dtype ?? "F32";
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!isStoredDtype(dtype)) throw new Error(`Cannot save checkpoint "${dir}": unknown dtype "${dtype}"`);
  if (!(maxShardBytes > 0)) {
    throw new Error(`Cannot save checkpoint "${dir}": maxShardBytes must be positive, got ${maxShardBytes}`);
  }
  const metadata = { format: "pt", ...options.metadata };
  const tx = createDirectoryTransaction(dir);
  try {
    const files = await writeShards(tx.temp, dir, tensors, dtype, maxShardBytes, metadata);
    await writeFileAtomic(join(tx.temp, CONFIG), new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"));
    if (!(await isDirectory(dir))) {
      await tx.commit();
      return;
    }
    await mergeInto(tx.temp, dir, [...files, CONFIG]);
  } catch (e) {
    await tx.abort();
    throw e;
  }
  await tx.abort(); // after a merge only the emptied temporary directory is left
}

/** Streams tensors into numbered shards in `temp`, then gives them their final names. */
async function writeShards(
  temp: string,
  dir: string,
  tensors: Iterable<TensorToSave> | AsyncIterable<TensorToSave>,
  dtype: StoredDtype,
  maxShardBytes: number,
  metadata: Record<string, string>,
): Promise<string[]> {
  const shardOf = new Map<string, number>();
  let pending: EncodedTensor[] = [];
  let pendingBytes = 0;
  let shards = 0;
  let totalBytes = 0;
  const flush = async () => {
    shards += 1;
    totalBytes += await writeSafetensors(join(temp, `${shards}.part`), pending, metadata);
    for (const t of pending) shardOf.set(t.name, shards);
    pending = [];
    pendingBytes = 0;
  };
  for await (const t of tensors) {
    if (shardOf.has(t.name) || pending.some((p) => p.name === t.name)) {
      throw new Error(`Cannot save checkpoint "${dir}": tensor "${t.name}" appears twice`);
    }
    if (t.data.length !== elementCount(t.shape)) {
      throw new Error(
        `Cannot save tensor "${t.name}": shape [${t.shape.join(", ")}] needs ${elementCount(t.shape)} values, got ${t.data.length}`,
      );
    }
    const bytes = encodeFromF32(t.data, dtype);
    if (pending.length > 0 && pendingBytes + bytes.byteLength > maxShardBytes) await flush();
    pending.push({ name: t.name, dtype, shape: [...t.shape], bytes });
    pendingBytes += bytes.byteLength;
  }
  if (pending.length > 0 || shards === 0) await flush();

  if (shards === 1) {
    await rename(join(temp, "1.part"), join(temp, SINGLE));
    return [SINGLE];
  }
  const pad = (n: number) => String(n).padStart(5, "0");
  const names = Array.from({ length: shards }, (_, i) => `model-${pad(i + 1)}-of-${pad(shards)}.safetensors`);
  for (let i = 0; i < shards; i++) await rename(join(temp, `${i + 1}.part`), join(temp, names[i]));
  const weightMap = Object.fromEntries([...shardOf].map(([name, shard]) => [name, names[shard - 1]]));
  const index = { metadata: { total_size: totalBytes }, weight_map: weightMap };
  await writeFileAtomic(join(temp, INDEX), new TextEncoder().encode(JSON.stringify(index, null, 2) + "\n"));
  return [...names, INDEX];
}

/**
 * Moves the finished files from `temp` into the existing directory `dir`:
 * stale weight files first, then shards, index and config.json last (see
 * {@link saveCheckpoint}).
 */
async function mergeInto(temp: string, dir: string, files: string[]): Promise<void> {
  await syncDirectory(temp);
  const keep = new Set(files);
  for (const old of await readdir(dir)) {
    if ((old === SINGLE || old === INDEX || SHARD_NAME.test(old)) && !keep.has(old)) await rm(join(dir, old));
  }
  for (const f of files) await rename(join(temp, f), join(dir, f));
  await syncDirectory(dir);
}
