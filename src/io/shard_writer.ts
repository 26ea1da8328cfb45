/**
 * Writes offtune shards: one Arrow IPC *file* per block, each tensor one
 * `arrow.fixed_shape_tensor` column of a single-row table (DESIGN.md "Records
 * and files"; the schema is in `shard_schema.ts` and docs/SHARDS.md).
 * Encoding to bytes is kept apart from the atomic file write.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { makeData, RecordBatch, RecordBatchFileWriter, Schema, Struct } from "apache-arrow";
import { f32ToF16 } from "../tensor/dtype.ts";
import { writeFileAtomicSync } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import {
  firstNonFinite,
  isShape,
  shapeSize,
  type ShardDtype,
  type ShardMeta,
  shardSchemaMetadata,
  type ShardTensor,
  tensorField,
  validateShardMeta,
} from "./shard_schema.ts";

/** Options of {@link encodeShard} and {@link writeShardFile}. */
export interface ShardWriteOptions {
  /** Stored element type (default float32); float16 rounds to nearest even. */
  dtype?: ShardDtype;
}

/** Largest list size Arrow's `FixedSizeList` can declare (an int32). */
const MAX_LIST_SIZE = 2 ** 31 - 1;

/** Index of the first float16 bit pattern that is ±Inf or NaN (exponent all ones), or -1. */
function firstNonFiniteHalf(bits: Uint16Array): number {
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7c00) === 0x7c00) return i;
  }
  return -1;
}

/** Checks one tensor and returns its stored element values. */
function storedValues(t: ShardTensor, dtype: ShardDtype, source: string): Float32Array | Uint16Array {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Cannot write shard "${source}": ${problem}`);
  };
  if (typeof t.name !== "string" || t.name === "") fail(`tensor name must be a non-empty string`);
  if (!isShape(t.shape)) fail(`tensor "${t.name}" has invalid shape ${JSON.stringify(t.shape)}`);
  const size = shapeSize(t.shape);
  if (size > MAX_LIST_SIZE) fail(`tensor "${t.name}" has ${size} elements, more than Arrow's list size limit`);
  if (!(t.data instanceof Float32Array)) fail(`tensor "${t.name}" data must be a Float32Array`);
  if (t.data.length !== size) {
    fail(`tensor "${t.name}" has shape [${t.shape.join(", ")}] (${size} elements) but ${t.data.length} values`);
  }
  const bad = firstNonFinite(t.data);
  if (bad >= 0) fail(`tensor "${t.name}" holds ${t.data[bad]} at flat index ${bad}; shards store finite values only`);
  if (dtype === "float32") return t.data;
  const bits = f32ToF16(t.data);
  const over = firstNonFiniteHalf(bits);
  if (over >= 0) {
    fail(`tensor "${t.name}" holds ${t.data[over]} at flat index ${over}, outside the float16 range (±65504)`);
  }
  return bits;
}

/** Encodes a shard for `source` (the file or label named in errors). */
function encode(meta: ShardMeta, tensors: readonly ShardTensor[], dtype: ShardDtype, source: string): Uint8Array {
  if (dtype !== "float32" && dtype !== "float16") {
    throw new CheckpointError(
      source,
      `Cannot write shard "${source}": dtype must be float32 or float16, got "${dtype}"`,
    );
  }
  validateShardMeta(meta, source);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) {
      throw new CheckpointError(source, `Cannot write shard "${source}": tensor "${t.name}" appears twice`);
    }
    seen.add(t.name);
  }
  const stored = tensors.map((t) => storedValues(t, dtype, source));
  const fields = tensors.map((t) => tensorField(t.name, t.shape, dtype));
  const columns = fields.map(({ type }, i) => {
    const values = makeData({ type: type.valueType, length: stored[i].length, nullCount: 0, data: stored[i] });
    return makeData({ type, length: 1, nullCount: 0, child: values });
  });
  const schema = new Schema(fields, shardSchemaMetadata(meta));
  const batch = new RecordBatch(
    schema,
    makeData({ type: new Struct(fields), length: 1, nullCount: 0, children: columns }),
  );
  return RecordBatchFileWriter.writeAll([batch]).toUint8Array(true);
}

/**
 * Encodes one block's tensors as an Arrow IPC file (one row, one
 * `arrow.fixed_shape_tensor` column per tensor, in the given order).
 *
 * @throws CheckpointError for invalid metadata, a duplicate tensor name, a
 *   shape that disagrees with the data length, or a NaN/±Inf value (also one
 *   that overflows float16 when `dtype` is float16)
 */
export function encodeShard(
  meta: ShardMeta,
  tensors: readonly ShardTensor[],
  options: ShardWriteOptions = {},
): Uint8Array {
  return encode(meta, tensors, options.dtype ?? "float32", `block ${meta.block}`);
}

/** SHA-256 of `bytes` as lowercase hex, the checksum manifests record. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Where a shard was written, its size and checksum (a manifest's shard entry). */
export interface WrittenShard {
  path: string;
  bytes: number;
  sha256: string;
}

/**
 * Encodes a shard and writes it atomically (temp name, fsync, rename), so
 * `path` holds either the previous file or the complete new one. Synchronous:
 * when it returns, the encoded bytes are on disk and can be collected, so a
 * streaming build holds at most one shard's bytes at a time.
 *
 * @throws CheckpointError as {@link encodeShard}, naming `path`
 */
export function writeShardFile(
  path: string,
  meta: ShardMeta,
  tensors: readonly ShardTensor[],
  options: ShardWriteOptions = {},
): WrittenShard {
  const bytes = encode(meta, tensors, options.dtype ?? "float32", path);
  writeFileAtomicSync(path, bytes);
  return { path, bytes: bytes.byteLength, sha256: sha256Hex(bytes) };
}
