/**
 * Writes offtune shards: one Arrow IPC *file* per block, each tensor one
 * `arrow.fixed_shape_tensor` column of a single-row table (DESIGN.md "Records
 * and files"; the schema is in `shard_schema.ts` and docs/SHARDS.md).
 * Encoding to bytes (`encodeShard`) and the streamed, atomic file write
 * (`writeShardFile`) share one record-batch builder.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { AsyncByteQueue, makeData, RecordBatch, RecordBatchFileWriter, Schema, Struct } from "apache-arrow";
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

/** A shard as one Arrow record batch, validated, for `source` (the file or label named in errors). */
function shardBatch(meta: ShardMeta, tensors: readonly ShardTensor[], dtype: ShardDtype, source: string): RecordBatch {
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
  return new RecordBatch(schema, makeData({ type: new Struct(fields), length: 1, nullCount: 0, children: columns }));
}

/**
 * An Arrow writer sink that passes each chunk (metadata, or a column's
 * values as a view of its array) to `onChunk` at once instead of queueing
 * it, so a file is written without a second, concatenated copy of its bytes.
 */
class ChunkSink extends AsyncByteQueue {
  constructor(private readonly onChunk: (chunk: Uint8Array) => void) {
    super();
  }

  override write(value: Uint8Array): void {
    if (value.byteLength > 0) this.onChunk(value);
  }
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
  const batch = shardBatch(meta, tensors, options.dtype ?? "float32", `block ${meta.block}`);
  return RecordBatchFileWriter.writeAll([batch]).toUint8Array(true);
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
 * `path` holds either the previous file or the complete new one; the bytes
 * are those of {@link encodeShard}. The encoding streams into the file chunk
 * by chunk (no whole-file buffer beside the tensors). Synchronous: when it
 * returns the shard is on disk, so a streaming build holds at most one
 * shard's tensors at a time.
 *
 * @throws CheckpointError as {@link encodeShard}, naming `path`
 */
export function writeShardFile(
  path: string,
  meta: ShardMeta,
  tensors: readonly ShardTensor[],
  options: ShardWriteOptions = {},
): WrittenShard {
  const batch = shardBatch(meta, tensors, options.dtype ?? "float32", path);
  const hash = createHash("sha256");
  let bytes = 0;
  writeFileAtomicSync(path, (write) => {
    const writer = new RecordBatchFileWriter();
    writer.reset(new ChunkSink((chunk) => {
      write(chunk);
      hash.update(chunk);
      bytes += chunk.byteLength;
    }));
    writer.write(batch);
    writer.finish();
  });
  return { path, bytes, sha256: hash.digest("hex") };
}
