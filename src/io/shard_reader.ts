/**
 * Reads offtune shards (Arrow IPC files, see `shard_schema.ts` and
 * docs/SHARDS.md) back into float32 tensors, validating everything a later
 * stage relies on: the file is a complete Arrow IPC file, its metadata names a
 * supported format version and a valid block, every column is a
 * `arrow.fixed_shape_tensor` whose shape matches its list size, the table has
 * exactly one row, and every value is finite. Files from other Arrow writers
 * that follow docs/SHARDS.md read the same way (tested with Arrow's generic JS
 * writer; with pyarrow's `FixedShapeTensorType` where pyarrow is installed).
 *
 * Check the SHA-256 before decoding bytes of unknown integrity (pass
 * `expectedSha256`, or run `verifyPackage`): apache-arrow's decoder is not
 * hardened against arbitrary corruption and can loop for a very long time on a
 * damaged flatbuffer, while truncation and framing damage are reported here.
 *
 * @module
 */
import { type Data, type FixedSizeList, type Table, tableFromIPC } from "apache-arrow";
import { f16ToF32 } from "../tensor/dtype.ts";
import { readWholeFile } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import {
  firstNonFinite,
  parseShardMetadata,
  parseTensorField,
  type ShardMeta,
  type ShardTensor,
} from "./shard_schema.ts";
import { sha256Hex } from "./shard_writer.ts";

/** A decoded shard: its identity and its tensors in column order. */
export interface ShardContents {
  meta: ShardMeta;
  tensors: ShardTensor[];
}

/** The magic bytes that open and close an Arrow IPC file (the file format, not the stream). */
const MAGIC = new TextEncoder().encode("ARROW1");

function hasMagicAt(bytes: Uint8Array, at: number): boolean {
  return at >= 0 && MAGIC.every((b, i) => bytes[at + i] === b);
}

/** Parses the IPC bytes, turning the library's low-level failures into a sentence naming the file. */
function parseIpcFile(bytes: Uint8Array, source: string): Table {
  const fail = (problem: string, cause?: unknown): never => {
    throw new CheckpointError(source, `Cannot read shard "${source}": ${problem}`, { cause });
  };
  if (!hasMagicAt(bytes, 0)) fail(`not an Arrow IPC file (it does not start with "ARROW1")`);
  if (bytes.byteLength < 2 * MAGIC.length + 4 || !hasMagicAt(bytes, bytes.byteLength - MAGIC.length)) {
    fail(`file is truncated (${bytes.byteLength} bytes, no closing "ARROW1" footer magic)`);
  }
  try {
    return tableFromIPC(bytes);
  } catch (e) {
    return fail(`Arrow IPC data is corrupt (${(e as Error).message})`, e);
  }
}

/**
 * Decodes and validates a shard's bytes.
 *
 * @param source the file (or label) named in error messages
 * @throws CheckpointError naming `source` for a truncated or corrupt file, a
 *   missing/unsupported format version, a column that is not a float32/float16
 *   `arrow.fixed_shape_tensor` or whose shape disagrees with its list size, a
 *   duplicate column, a row count other than one, a null, or a NaN/±Inf value
 */
export function decodeShard(bytes: Uint8Array, source: string): ShardContents {
  const fail = (problem: string): never => {
    throw new CheckpointError(source, `Cannot read shard "${source}": ${problem}`);
  };
  const table = parseIpcFile(bytes, source);
  const meta = parseShardMetadata(table.schema.metadata, source);
  const fields = table.schema.fields;
  if (fields.length > 0 && table.numRows !== 1) fail(`expected one row, found ${table.numRows}`);
  const seen = new Set<string>();
  const tensors = fields.map((field, i): ShardTensor => {
    if (seen.has(field.name)) fail(`column "${field.name}" appears twice`);
    seen.add(field.name);
    const { shape, dtype } = parseTensorField(field, source);
    const row = table.getChildAt(i)!.data.find((d) => d.length > 0) as Data<FixedSizeList>;
    if (row.nullCount > 0 || row.children[0].nullCount > 0) fail(`column "${field.name}" holds nulls`);
    const stored = row.children[0].values.subarray(0, row.type.listSize);
    const data = dtype === "float16" ? f16ToF32(stored as Uint16Array) : new Float32Array(stored as Float32Array);
    const bad = firstNonFinite(data);
    if (bad >= 0) fail(`column "${field.name}" holds ${data[bad]} at flat index ${bad}`);
    return { name: field.name, shape, data };
  });
  return { meta, tensors };
}

/** Options of {@link readShardFile}. */
export interface ShardReadOptions {
  /** The SHA-256 (lowercase hex) the file must have, e.g. from the manifest. */
  expectedSha256?: string;
}

/**
 * Reads and decodes a shard file, first checking its SHA-256 when one is
 * expected (so a corrupt file is reported as such, not as a decode error).
 *
 * @throws CheckpointError for a missing file, a checksum mismatch (naming the
 *   file and both hashes), or anything {@link decodeShard} rejects
 */
export async function readShardFile(path: string, options: ShardReadOptions = {}): Promise<ShardContents> {
  const bytes = await readWholeFile(path, "shard");
  if (options.expectedSha256 !== undefined) {
    const actual = sha256Hex(bytes);
    if (actual !== options.expectedSha256) {
      throw new CheckpointError(
        path,
        `Shard "${path}" is corrupt: its sha256 is ${actual} but ${options.expectedSha256} was expected`,
      );
    }
  }
  return decodeShard(bytes, path);
}
