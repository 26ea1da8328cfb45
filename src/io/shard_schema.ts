/**
 * The schema of an offtune shard: how a tensor becomes an Arrow column and how
 * the shard's identity becomes schema metadata (docs/DESIGN.md "Records and files").
 * Pure functions on Arrow `Field`s and metadata maps; no bytes, no files.
 *
 * Each tensor is a column of the canonical extension type
 * `arrow.fixed_shape_tensor` (https://arrow.apache.org/docs/format/CanonicalExtensions.html):
 * storage `FixedSizeList<float32 | float16>` of list size `prod(shape)`, with
 * field metadata `ARROW:extension:name` = `arrow.fixed_shape_tensor` and
 * `ARROW:extension:metadata` = `{"shape":[...]}`. apache-arrow JS has no
 * extension-type registry, so the extension lives in field metadata exactly as
 * the IPC format stores it, which is also what pyarrow and arrow-rs read.
 * docs/SHARDS.md documents the layout for users of other Arrow readers.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { type DataType, Field, FixedSizeList, type Float, Float16, Float32, Precision, Type } from "apache-arrow";
import { CheckpointError } from "./errors.ts";

/**
 * The shard format version this module writes and the only one it reads.
 * Version 2 added `offtune.config_sha256`, so that a shard says which config
 * it was written for (docs/GUARANTEES.md "What is verified").
 */
export const SHARD_FORMAT_VERSION = "2";

/** Field-metadata key naming an Arrow extension type (Arrow IPC format). */
export const EXTENSION_NAME_KEY = "ARROW:extension:name";
/** Field-metadata key holding an Arrow extension type's serialized parameters. */
export const EXTENSION_METADATA_KEY = "ARROW:extension:metadata";
/** The canonical extension name of a fixed-shape tensor column. */
export const FIXED_SHAPE_TENSOR = "arrow.fixed_shape_tensor";

/** Schema-metadata keys of a shard, all string-valued. */
export const SHARD_KEYS = {
  formatVersion: "offtune.format_version",
  block: "offtune.block",
  role: "offtune.role",
  method: "offtune.method",
  settings: "offtune.settings",
  sourceHash: "offtune.source_hash",
  configHash: "offtune.config_sha256",
  positions: "offtune.positions",
} as const;

/** Element type of a stored tensor; data is always float32 in memory. */
export type ShardDtype = "float32" | "float16";

/** Which part of the model a shard holds (docs/METHOD.md: adapter and emulator split). */
export type ShardRole = "adapter" | "middle" | "outer";

/** A tensor as offtune hands it to and takes it from a shard: row-major data for `shape`. */
export interface ShardTensor {
  /** The weight's name inside its block, e.g. `self_attn.q_proj.weight_u`. */
  name: string;
  /** Shape of the tensor; `data` holds `shapeSize(shape)` values. */
  shape: number[];
  /** Row-major float32 values (kernel layout [in, out] for linears, as given). */
  data: Float32Array;
}

/**
 * A tensor whose values are produced while its shard is written instead of
 * being held: `stream` calls `emit` with consecutive runs of the row-major
 * float32 values, `shapeSize(shape)` of them in all (a vocabulary matrix read
 * from the checkpoint rows at a time, docs/DESIGN.md "Scale"). A shard written to
 * a file holds one run in memory at a time.
 */
export interface StreamedShardTensor {
  /** The weight's name inside its block (the column name). */
  name: string;
  /** Shape of the tensor. */
  shape: number[];
  /** Calls `emit` with consecutive runs of the row-major values. */
  stream(emit: (values: Float32Array) => void): void;
}

/** A shard column as writers take it: values held ({@link ShardTensor}) or streamed. */
export type ShardTensorInput = ShardTensor | StreamedShardTensor;

/** A shard's identity: which block, its role, and the method that produced it. */
export interface ShardMeta {
  /** Transformer block index, or "outer" for embeddings, final norm and head. */
  block: number | "outer";
  /** `adapter`, `middle` or `outer` (`outer` exactly when `block` is). */
  role: ShardRole;
  /** The compression method (e.g. `gradot-drd`), or any label for adapters. */
  method: string;
  /** The method's settings; JSON values only. */
  settings: Record<string, unknown>;
  /** Hash identifying the source checkpoint. */
  sourceHash: string;
  /** {@link configSha256} of the model config the shard was written for (the manifest's `config`). */
  configHash: string;
  /**
   * A shared middle block only (CRaSh, docs/METHOD.md §3 "CRaSh"): the
   * consecutive emulator positions it runs at, increasing, two or more; the
   * manifest's `blockIndices` must say the same (docs/SHARDS.md). Absent for
   * a block that runs at one position.
   */
  positions?: number[];
}

/** `value` as JSON with every object's keys sorted: the same text for equal JSON values, whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * SHA-256 (lowercase hex) of a model config (a parsed config.json) in
 * canonical JSON: what every shard of a package records, so that a config
 * edited in the manifest no longer matches its shards, and what an adapter's
 * config is compared by with the model it is plugged into.
 */
export function configSha256(config: Record<string, unknown>): string {
  return createHash("sha256").update(canonicalJson(config)).digest("hex");
}

/** Every {@link ShardRole}, for validation. */
export const SHARD_ROLES: readonly ShardRole[] = ["adapter", "middle", "outer"];

/** Number of elements of a tensor of `shape` (1 for a scalar `[]`). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/**
 * Index of the first NaN or ±Inf in `values`, or -1. Shards hold finite values
 * only; writers and readers both enforce it with this scan, as does the
 * checkpoint reader (src/io/checkpoint.ts).
 *
 * Blocks of 4,096 values are first summed as `v · 0` (0 for a finite value,
 * NaN for NaN and ±Inf) on four independent accumulators, and only a block
 * whose sum is not 0 is searched value by value: 1.6x faster than testing
 * each value (every value of a GradOT build's reads and writes is scanned).
 */
export function firstNonFinite(values: Float32Array): number {
  const n = values.length;
  for (let from = 0; from < n; from += NON_FINITE_BLOCK) {
    const to = Math.min(n, from + NON_FINITE_BLOCK);
    let a = 0;
    let b = 0;
    let c = 0;
    let d = 0;
    let i = from;
    for (; i + 4 <= to; i += 4) {
      a += values[i] * 0;
      b += values[i + 1] * 0;
      c += values[i + 2] * 0;
      d += values[i + 3] * 0;
    }
    for (; i < to; i++) a += values[i] * 0;
    if (a + b + c + d === 0) continue;
    for (let j = from; j < to; j++) if (!Number.isFinite(values[j])) return j;
  }
  return -1;
}

/** Values per block of {@link firstNonFinite}'s first pass. */
const NON_FINITE_BLOCK = 4096;

/** Whether `shape` is a list of non-negative safe integers. */
export function isShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((s) => Number.isSafeInteger(s) && s >= 0);
}

/**
 * Throws unless `value` survives JSON.stringify/parse unchanged: plain objects,
 * arrays, strings, booleans, null and finite numbers. Settings are stored as
 * JSON, and JSON.stringify silently turns NaN into null and drops undefined.
 */
function assertJson(value: unknown, path: string, fail: (problem: string) => never): void {
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail(`${path} is ${value}, which JSON cannot store`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertJson(v, `${path}[${i}]`, fail));
    return;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [k, v] of Object.entries(value)) assertJson(v, `${path}.${k}`, fail);
    return;
  }
  fail(`${path} is a ${typeof value === "object" ? value.constructor.name : typeof value}, not a JSON value`);
}

/**
 * Why `block` and `role` cannot describe a shard, or undefined if they can: a
 * block is a non-negative integer or "outer", the role is a {@link ShardRole},
 * and block "outer" goes with role "outer" and only with it. Shared by shard
 * metadata and manifest entries so the two never disagree on the rule.
 */
export function blockRoleProblem(block: unknown, role: unknown): string | undefined {
  if (block !== "outer" && !(Number.isSafeInteger(block) && (block as number) >= 0)) {
    return `block must be a non-negative integer or "outer", got ${JSON.stringify(block)}`;
  }
  if (!SHARD_ROLES.includes(role as ShardRole)) {
    return `role must be one of ${SHARD_ROLES.join(", ")}, got ${JSON.stringify(role)}`;
  }
  if ((block === "outer") !== (role === "outer")) {
    return `block ${JSON.stringify(block)} does not go with role "${role}" (only block "outer" has role "outer")`;
  }
  return undefined;
}

/**
 * Checks a shard's identity: a block index is a non-negative integer, the
 * "outer" block goes with the "outer" role and only with it, and settings are
 * a JSON object.
 *
 * @param source the file (or label) named in the error
 */
export function validateShardMeta(meta: ShardMeta, source: string): void {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Invalid shard metadata for "${source}": ${problem}`);
  };
  const problem = blockRoleProblem(meta.block, meta.role);
  if (problem) fail(problem);
  if (typeof meta.method !== "string") fail(`method must be a string, got ${typeof meta.method}`);
  if (typeof meta.sourceHash !== "string") fail(`sourceHash must be a string, got ${typeof meta.sourceHash}`);
  if (typeof meta.configHash !== "string") fail(`configHash must be a string, got ${typeof meta.configHash}`);
  if (typeof meta.settings !== "object" || meta.settings === null || Array.isArray(meta.settings)) {
    fail("settings must be an object");
  }
  assertJson(meta.settings, "settings", fail);
  if (meta.positions !== undefined) {
    const p = meta.positions;
    const runs = Array.isArray(p) && p.length >= 2 && p.every((x, i) => Number.isSafeInteger(x) && x >= 0 && (i === 0 || x === p[i - 1] + 1));
    if (!runs) fail(`positions must be two or more consecutive increasing positions, got ${JSON.stringify(p)}`);
    if (meta.role !== "middle") fail(`positions belong to a shared middle block, this shard holds role "${meta.role}"`);
  }
}

/** The schema metadata of a shard (all values strings, as Arrow requires). */
export function shardSchemaMetadata(meta: ShardMeta): Map<string, string> {
  return new Map([
    [SHARD_KEYS.formatVersion, SHARD_FORMAT_VERSION],
    [SHARD_KEYS.block, String(meta.block)],
    [SHARD_KEYS.role, meta.role],
    [SHARD_KEYS.method, meta.method],
    [SHARD_KEYS.settings, JSON.stringify(meta.settings)],
    [SHARD_KEYS.sourceHash, meta.sourceHash],
    [SHARD_KEYS.configHash, meta.configHash],
    ...(meta.positions ? [[SHARD_KEYS.positions, JSON.stringify(meta.positions)] as [string, string]] : []),
  ]);
}

/**
 * Parses and validates a shard's schema metadata.
 *
 * @throws CheckpointError naming `source` for a missing key, an unsupported
 *   format version, a malformed block index, role, settings or positions JSON
 */
export function parseShardMetadata(metadata: ReadonlyMap<string, string>, source: string): ShardMeta {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Cannot read shard "${source}": ${problem}`);
  };
  const get = (key: string): string => metadata.get(key) ?? fail(`schema metadata lacks "${key}"`);
  const version = get(SHARD_KEYS.formatVersion);
  if (version !== SHARD_FORMAT_VERSION) {
    fail(`unsupported format version ${JSON.stringify(version)} (this offtune reads version ${SHARD_FORMAT_VERSION})`);
  }
  const blockText = get(SHARD_KEYS.block);
  if (blockText !== "outer" && !/^(0|[1-9]\d*)$/.test(blockText)) {
    fail(`"${SHARD_KEYS.block}" is ${JSON.stringify(blockText)}, not a block index or "outer"`);
  }
  const parse = (key: string, text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch (e) {
      return fail(`"${key}" is not valid JSON (${(e as Error).message})`);
    }
  };
  const settings = parse(SHARD_KEYS.settings, get(SHARD_KEYS.settings));
  const positions = metadata.get(SHARD_KEYS.positions);
  const meta: ShardMeta = {
    block: blockText === "outer" ? "outer" : Number(blockText),
    role: get(SHARD_KEYS.role) as ShardRole,
    method: get(SHARD_KEYS.method),
    settings: settings as Record<string, unknown>,
    sourceHash: get(SHARD_KEYS.sourceHash),
    configHash: get(SHARD_KEYS.configHash),
    ...(positions === undefined ? {} : { positions: parse(SHARD_KEYS.positions, positions) as number[] }),
  };
  validateShardMeta(meta, source);
  return meta;
}

/**
 * The Arrow field of one tensor column: a `fixed_shape_tensor` over
 * `FixedSizeList<dtype>[prod(shape)]`. The list's child is named "item" and
 * nullable, as pyarrow's `FixedShapeTensorType` storage is, so a C++ reader
 * rebuilds exactly the storage type it expects.
 */
export function tensorField(name: string, shape: readonly number[], dtype: ShardDtype): Field {
  const element = dtype === "float16" ? new Float16() : new Float32();
  const storage = new FixedSizeList(shapeSize(shape), new Field("item", element, true));
  return new Field(
    name,
    storage,
    false,
    new Map([
      [EXTENSION_NAME_KEY, FIXED_SHAPE_TENSOR],
      [EXTENSION_METADATA_KEY, JSON.stringify({ shape })],
    ]),
  );
}

/** What a validated tensor column holds: its shape and stored element type. */
export interface TensorColumnType {
  shape: number[];
  dtype: ShardDtype;
}

function elementDtype(type: DataType): ShardDtype | undefined {
  if (type.typeId !== Type.Float) return undefined;
  const { precision } = type as Float;
  if (precision === Precision.HALF) return "float16";
  if (precision === Precision.SINGLE) return "float32";
  return undefined;
}

/**
 * Validates one column as a fixed-shape tensor offtune can read: the extension
 * name, a `FixedSizeList` of float32 or float16, shape metadata whose product
 * equals the list size, and no permutation other than the identity (offtune
 * stores row-major tensors and does not transpose on read). `dim_names` is
 * allowed and ignored.
 *
 * @throws CheckpointError naming `source` and the column
 */
export function parseTensorField(field: Field, source: string): TensorColumnType {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Cannot read shard "${source}": column "${field.name}" ${problem}`);
  };
  const extension = field.metadata.get(EXTENSION_NAME_KEY);
  if (extension !== FIXED_SHAPE_TENSOR) {
    fail(
      `is not an ${FIXED_SHAPE_TENSOR} (extension name: ${
        extension === undefined ? "none" : JSON.stringify(extension)
      })`,
    );
  }
  const type = field.type;
  if (type.typeId !== Type.FixedSizeList) {
    fail(`has storage type ${String(type)}, expected FixedSizeList`);
  }
  const list = type as FixedSizeList;
  const dtype = elementDtype(list.valueType) ??
    fail(`has element type ${String(list.valueType)}, expected float32 or float16`);
  let params: unknown;
  try {
    params = JSON.parse(field.metadata.get(EXTENSION_METADATA_KEY) ?? "");
  } catch {
    fail(`has extension metadata ${JSON.stringify(field.metadata.get(EXTENSION_METADATA_KEY))}, not JSON`);
  }
  const { shape, permutation } = (params ?? {}) as { shape?: unknown; permutation?: unknown };
  if (!isShape(shape)) fail(`has extension metadata without a valid "shape": ${JSON.stringify(params)}`);
  const okShape = shape as number[];
  if (shapeSize(okShape) !== list.listSize) {
    fail(`has shape [${okShape.join(", ")}] (${shapeSize(okShape)} elements) but list size ${list.listSize}`);
  }
  if (permutation !== undefined) {
    const identity = Array.isArray(permutation) && permutation.length === okShape.length &&
      permutation.every((p, i) => p === i);
    if (!identity) fail(`has permutation ${JSON.stringify(permutation)}; offtune reads row-major tensors only`);
  }
  return { shape: [...okShape], dtype };
}
