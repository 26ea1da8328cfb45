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
 * Decoding is bounded: before apache-arrow sees the bytes, the footer, the
 * schema and every record batch message are walked with each offset and
 * length checked (arrow_ipc_bounds.ts), so a damaged or crafted file, even
 * one whose SHA-256 the manifest lists, is refused with a CheckpointError
 * instead of looping or allocating without limit. {@link readShardHeader}
 * reads a shard's identity and tensor shapes from its footer alone, for
 * checking a package against its manifest without decoding the values.
 *
 * @module
 */
import { open, stat } from "node:fs/promises";
import { type Data, type FixedSizeList, type Float, Precision, RecordBatchFileReader, type Schema, type Table, tableFromIPC } from "apache-arrow";
import { f16ToF32 } from "../tensor/dtype.ts";
import { checkIpcFooter, checkRecordBatches, type Fail, type IpcFooterLayout } from "./arrow_ipc_bounds.ts";
import { readWholeFile } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import {
  firstNonFinite,
  parseShardMetadata,
  parseTensorField,
  type ShardDtype,
  type ShardMeta,
  type ShardTensor,
  shapeSize,
} from "./shard_schema.ts";
import { sha256Hex } from "./shard_writer.ts";

/** A decoded shard: its identity and its tensors in column order. */
export interface ShardContents {
  meta: ShardMeta;
  tensors: ShardTensor[];
}

/** The magic bytes that open and close an Arrow IPC file (the file format, not the stream). */
const MAGIC = new TextEncoder().encode("ARROW1");
/** The leading magic with its padding, and the trailer: footer length (int32) and magic. */
const LEADING = 8;
const TRAILING = 10;

function hasMagicAt(bytes: Uint8Array, at: number): boolean {
  return at >= 0 && MAGIC.every((b, i) => bytes[at + i] === b);
}

/** A shard's identity and the name, shape and stored element type of each tensor, in column order. */
export interface ShardHeader {
  meta: ShardMeta;
  tensors: Array<{ name: string; shape: number[]; dtype: ShardDtype }>;
}

/** The shard reader's error for `source`. */
const shardFail = (source: string) => (problem: string, cause?: unknown): never => {
  throw new CheckpointError(source, `Cannot read shard "${source}": ${problem}`, { cause });
};

/**
 * Checks an IPC file's framing from its first bytes, its last
 * {@link TRAILING} bytes and its size: the leading magic, the closing magic,
 * and a footer length that fits. Returns the footer length.
 */
function checkFraming(head: Uint8Array, trailer: Uint8Array, size: number, fail: Fail): number {
  if (!hasMagicAt(head, 0)) fail(`not an Arrow IPC file (it does not start with "ARROW1")`);
  if (size < LEADING + TRAILING + 4 || !hasMagicAt(trailer, TRAILING - MAGIC.length)) {
    fail(`file is truncated (${size} bytes, no closing "ARROW1" footer magic)`);
  }
  const footerLength = new DataView(trailer.buffer, trailer.byteOffset, TRAILING).getInt32(0, true);
  if (footerLength <= 0 || size - TRAILING - footerLength < LEADING) {
    fail(`Arrow IPC data is corrupt (footer length ${footerLength} does not fit the file (${size} bytes))`);
  }
  return footerLength;
}

/**
 * Checks an IPC file's framing and footer (bounded, arrow_ipc_bounds.ts),
 * then lets apache-arrow read the schema, and validates it as a shard's.
 * `footerOnly`: `bytes` is a footer behind a leading magic (see
 * {@link readShardHeader}), whose record batch blocks point elsewhere.
 */
function readHeader(
  bytes: Uint8Array,
  source: string,
  footerOnly = false,
): { header: ShardHeader; layout: IpcFooterLayout; widths: number[] } {
  const fail = shardFail(source);
  const size = bytes.byteLength;
  checkFraming(bytes, bytes.subarray(Math.max(0, size - TRAILING)), size, fail);
  const corrupt: Fail = (problem) => fail(`Arrow IPC data is corrupt (${problem})`);
  const layout = checkIpcFooter(bytes, corrupt, { batchesInFile: !footerOnly });
  let schema: Schema;
  try {
    const reader = RecordBatchFileReader.from(bytes);
    reader.open();
    schema = reader.schema;
  } catch (e) {
    return fail(`Arrow IPC data is corrupt (${(e as Error).message})`, e);
  }
  const meta = parseShardMetadata(schema.metadata, source);
  const seen = new Set<string>();
  const widths: number[] = [];
  const tensors = schema.fields.map((field) => {
    if (seen.has(field.name)) fail(`column "${field.name}" appears twice`);
    seen.add(field.name);
    const { shape, dtype } = parseTensorField(field, source);
    widths.push(((field.type as FixedSizeList).valueType as Float).precision === Precision.HALF ? 2 : 4);
    return { name: field.name, shape, dtype };
  });
  return { header: { meta, tensors }, layout, widths };
}

/**
 * Decodes and validates a shard's bytes. No input makes it hang or allocate
 * beyond the values the file holds: every length and offset is checked
 * before apache-arrow decodes anything (module doc).
 *
 * @param source the file (or label) named in error messages
 * @throws CheckpointError naming `source` for a truncated or corrupt file, a
 *   missing/unsupported format version, a column that is not a float32/float16
 *   `arrow.fixed_shape_tensor` or whose shape disagrees with its list size, a
 *   duplicate column, a row count other than one, a null, or a NaN/±Inf value
 */
export function decodeShard(bytes: Uint8Array, source: string): ShardContents {
  const fail = shardFail(source);
  const { header, layout, widths } = readHeader(bytes, source);
  const columns = header.tensors.map((t, i) => ({ name: t.name, listSize: shapeSize(t.shape), elementBytes: widths[i] }));
  const rows = checkRecordBatches(bytes, layout, columns, (problem) => fail(`Arrow IPC data is corrupt (${problem})`));
  if (columns.length > 0 && rows !== 1) fail(`expected one row, found ${rows}`);
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (e) {
    return fail(`Arrow IPC data is corrupt (${(e as Error).message})`, e);
  }
  const tensors = header.tensors.map(({ name, shape, dtype }, i): ShardTensor => {
    const row = table.getChildAt(i)!.data.find((d) => d.length > 0) as Data<FixedSizeList>;
    if (row.nullCount > 0 || row.children[0].nullCount > 0) fail(`column "${name}" holds nulls`);
    const stored = row.children[0].values.subarray(0, row.type.listSize);
    const data = dtype === "float16" ? f16ToF32(stored as Uint16Array) : new Float32Array(stored as Float32Array);
    const bad = firstNonFinite(data);
    if (bad >= 0) fail(`column "${name}" holds ${data[bad]} at flat index ${bad}`);
    return { name, shape, data };
  });
  return { meta: header.meta, tensors };
}

/**
 * A shard file's identity and tensor shapes, read from its footer alone (the
 * last bytes of the file, however large the shard): what a manifest entry is
 * compared with (manifest.ts `verifyPackage`).
 *
 * @throws CheckpointError naming `path` for a missing, truncated or corrupt
 *   file, or a schema {@link decodeShard} would refuse
 */
export async function readShardHeader(path: string): Promise<ShardHeader> {
  const size = await stat(path).then((s) => s.size, () => undefined);
  if (size === undefined) throw new CheckpointError(path, `Cannot read shard "${path}": file does not exist`);
  const file = await open(path, "r");
  try {
    const head = new Uint8Array(Math.min(size, LEADING));
    await file.read(head, 0, head.length, 0);
    const trailer = new Uint8Array(TRAILING);
    if (size >= TRAILING) await file.read(trailer, 0, TRAILING, size - TRAILING);
    const footerLength = checkFraming(head, trailer, size, shardFail(path));
    // The footer's offsets are relative to itself, so behind a leading magic
    // it reads as a file without record batch bodies: what readHeader needs.
    const tail = new Uint8Array(LEADING + footerLength + TRAILING);
    tail.set(MAGIC, 0);
    await file.read(tail, LEADING, footerLength + TRAILING, size - TRAILING - footerLength);
    return readHeader(tail, path, true).header;
  } finally {
    await file.close();
  }
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
