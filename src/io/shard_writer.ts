/**
 * Writes offtune shards: one Arrow IPC *file* per block, each tensor one
 * `arrow.fixed_shape_tensor` column of a single-row table (docs/DESIGN.md "Records
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
  type ShardTensorInput,
  type StreamedShardTensor,
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

/** Throws the shard writer's error for `source`. */
function shardError(source: string, problem: string): never {
  throw new CheckpointError(source, `Cannot write shard "${source}": ${problem}`);
}

/**
 * Checks a run of a tensor's float32 values (starting at flat index `offset`)
 * and returns them as stored: the same array for float32, float16 bits else.
 */
function storedRun(name: string, values: Float32Array, offset: number, dtype: ShardDtype, source: string): Float32Array | Uint16Array {
  const bad = firstNonFinite(values);
  if (bad >= 0) {
    shardError(source, `tensor "${name}" holds ${values[bad]} at flat index ${offset + bad}; shards store finite values only`);
  }
  if (dtype === "float32") return values;
  const bits = f32ToF16(values);
  const over = firstNonFiniteHalf(bits);
  if (over >= 0) {
    shardError(source, `tensor "${name}" holds ${values[over]} at flat index ${offset + over}, outside the float16 range (±65504)`);
  }
  return bits;
}

/** Checks a column's name and shape; returns its element count. */
function checkedSize(t: ShardTensorInput, source: string): number {
  if (typeof t.name !== "string" || t.name === "") shardError(source, `tensor name must be a non-empty string`);
  if (!isShape(t.shape)) shardError(source, `tensor "${t.name}" has invalid shape ${JSON.stringify(t.shape)}`);
  const size = shapeSize(t.shape);
  if (size > MAX_LIST_SIZE) shardError(source, `tensor "${t.name}" has ${size} elements, more than Arrow's list size limit`);
  return size;
}

/** Checks one held tensor and returns its stored element values. */
function storedValues(t: ShardTensor, dtype: ShardDtype, source: string): Float32Array | Uint16Array {
  const size = checkedSize(t, source);
  if (!(t.data instanceof Float32Array)) shardError(source, `tensor "${t.name}" data must be a Float32Array`);
  if (t.data.length !== size) {
    shardError(source, `tensor "${t.name}" has shape [${t.shape.join(", ")}] (${size} elements) but ${t.data.length} values`);
  }
  return storedRun(t.name, t.data, 0, dtype, source);
}

const isStreamed = (t: ShardTensorInput): t is StreamedShardTensor =>
  "stream" in t && typeof t.stream === "function";

/**
 * A shard as one Arrow record batch, validated, for `source` (the file or
 * label named in errors). A streamed column's values are a placeholder array
 * (fresh zero pages, never touched, so never resident) listed in `streamed`
 * by its buffer: the file writer replaces its bytes by the stream's.
 */
function shardBatch(
  meta: ShardMeta,
  tensors: readonly ShardTensorInput[],
  dtype: ShardDtype,
  source: string,
): { batch: RecordBatch; streamed: Map<ArrayBufferLike, StreamedShardTensor> } {
  if (dtype !== "float32" && dtype !== "float16") {
    shardError(source, `dtype must be float32 or float16, got "${dtype}"`);
  }
  validateShardMeta(meta, source);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) shardError(source, `tensor "${t.name}" appears twice`);
    seen.add(t.name);
  }
  const streamed = new Map<ArrayBufferLike, StreamedShardTensor>();
  const stored = tensors.map((t) => {
    if (!isStreamed(t)) return storedValues(t, dtype, source);
    const size = checkedSize(t, source);
    const placeholder = dtype === "float32" ? new Float32Array(size) : new Uint16Array(size);
    streamed.set(placeholder.buffer, t);
    return placeholder;
  });
  const fields = tensors.map((t) => tensorField(t.name, t.shape, dtype));
  const columns = fields.map(({ type }, i) => {
    const values = makeData({ type: type.valueType, length: stored[i].length, nullCount: 0, data: stored[i] });
    return makeData({ type, length: 1, nullCount: 0, child: values });
  });
  const schema = new Schema(fields, shardSchemaMetadata(meta));
  const batch = new RecordBatch(schema, makeData({ type: new Struct(fields), length: 1, nullCount: 0, children: columns }));
  return { batch, streamed };
}

/**
 * Runs a streamed column, passing each run of values with its flat offset to
 * `onRun`, and checks the runs are float32 and add up to the shape.
 */
function runStream(t: StreamedShardTensor, source: string, onRun: (values: Float32Array, offset: number) => void): void {
  const size = shapeSize(t.shape);
  const shape = `[${t.shape.join(", ")}]`;
  let offset = 0;
  t.stream((values) => {
    if (!(values instanceof Float32Array)) shardError(source, `tensor "${t.name}" streamed values that are not a Float32Array`);
    if (offset + values.length > size) shardError(source, `tensor "${t.name}" streamed more than the ${size} values of shape ${shape}`);
    onRun(values, offset);
    offset += values.length;
  });
  if (offset !== size) shardError(source, `tensor "${t.name}" streamed ${offset} of the ${size} values of shape ${shape}`);
}

/** Writes a streamed column's values as stored bytes, run by run, checked like held values. */
function writeStreamed(t: StreamedShardTensor, dtype: ShardDtype, source: string, write: (bytes: Uint8Array) => void): void {
  runStream(t, source, (values, offset) => {
    const stored = storedRun(t.name, values, offset, dtype, source);
    write(new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength));
  });
}

/** A streamed column's values collected into one array (for in-memory encoding). */
function collected(t: StreamedShardTensor, source: string): ShardTensor {
  const data = new Float32Array(shapeSize(t.shape));
  runStream(t, source, (values, offset) => data.set(values, offset));
  return { name: t.name, shape: t.shape, data };
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
  tensors: readonly ShardTensorInput[],
  options: ShardWriteOptions = {},
): Uint8Array {
  const source = `block ${meta.block}`;
  const held = tensors.map((t) => (isStreamed(t) ? collected(t, source) : t));
  const { batch } = shardBatch(meta, held, options.dtype ?? "float32", source);
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
  tensors: readonly ShardTensorInput[],
  options: ShardWriteOptions = {},
): WrittenShard {
  const dtype = options.dtype ?? "float32";
  const { batch, streamed } = shardBatch(meta, tensors, dtype, path);
  const hash = createHash("sha256");
  let bytes = 0;
  writeFileAtomicSync(path, (write) => {
    const emit = (chunk: Uint8Array) => {
      write(chunk);
      hash.update(chunk);
      bytes += chunk.byteLength;
    };
    const writer = new RecordBatchFileWriter();
    writer.reset(new ChunkSink((chunk) => {
      const column = streamed.get(chunk.buffer);
      if (!column) return emit(chunk);
      if (chunk.byteOffset !== 0 || chunk.byteLength !== chunk.buffer.byteLength) {
        throw new Error(`writeShardFile: the Arrow writer split streamed column "${column.name}" (${path})`);
      }
      writeStreamed(column, dtype, path, emit);
    }));
    writer.write(batch);
    writer.finish();
  });
  return { path, bytes, sha256: hash.digest("hex") };
}
