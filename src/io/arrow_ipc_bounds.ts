/**
 * Bounds checks on an Arrow IPC file before apache-arrow decodes it, so that
 * no input, however crafted, makes a shard read hang or allocate without
 * limit (docs/GUARANTEES.md "What is verified").
 *
 * apache-arrow trusts the file: it loops over whatever vector lengths the
 * flatbuffers claim, follows offsets wherever they point (a field table can
 * list the same child a thousand times at every level, an exponential walk),
 * and makes arrays of the lengths the record batch claims. Here every
 * flatbuffer the decoder will read (the footer with its schema, and each
 * record batch message) is walked once with every offset and length checked
 * against the bytes, the total work is capped by a budget proportional to the
 * metadata's size, and each record batch's nodes and buffers are checked
 * against the columns a shard may hold (`FixedSizeList<float>`, see
 * shard_schema.ts) and against the message body. Layout per the Arrow
 * columnar format's IPC section (Footer, Schema, Field, Message, RecordBatch
 * in File.fbs, Schema.fbs, Message.fbs).
 *
 * @module
 */

/** Arrow's `Type` union tags whose type tables hold more than scalars. */
const TYPE_TIMESTAMP = 10;
const TYPE_UNION = 14;
/** The last `Type` union tag of the Arrow format (LargeListView). */
const LAST_TYPE = 26;
/** `MessageHeader` tag of a record batch. */
const RECORD_BATCH = 3;
/** Size of the `Block` struct (offset i64, metaDataLength i32 + pad, bodyLength i64). */
const BLOCK_BYTES = 24;
/** Size of the `FieldNode` and `Buffer` structs (two i64 each). */
const PAIR_BYTES = 16;
/** Deepest field nesting accepted (a shard column is two levels deep). */
const MAX_FIELD_DEPTH = 16;
/** Most record batches accepted in one shard file (offtune writes one). */
const MAX_RECORD_BATCHES = 1024;
/** Bytes of the "ARROW1" magic plus its padding at the start of a file, and of the trailer (footer length + magic). */
const LEADING = 8;
const TRAILING = 10;

/** Throws the caller's error for a problem found. */
export type Fail = (problem: string) => never;

/** One record batch as the footer lists it: where its message starts. */
interface FooterBlock {
  offset: number;
}

/** A column as a shard holds it: its list size and element width, for the record batch checks. */
export interface TensorColumnLayout {
  name: string;
  listSize: number;
  elementBytes: number;
}

/**
 * A flatbuffer held in `bytes[start, end)`, read with every position checked
 * to lie inside it, and with a budget of work (tables visited, vector
 * elements and string bytes read) that bounds what a decoder following the
 * same references does, shared references counted each time.
 */
class BoundedBuffer {
  private readonly view: DataView;
  private budget: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly start: number,
    readonly end: number,
    readonly what: string,
    readonly fail: Fail,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.budget = 4 * (end - start) + 4096;
  }

  /** Checks that `[pos, pos + size)` lies inside the buffer. */
  need(pos: number, size: number, item: string): void {
    if (!(pos >= this.start && size >= 0 && pos + size <= this.end)) {
      this.fail(`${this.what}: ${item} at byte ${pos} (${size} bytes) lies outside it (bytes ${this.start}..${this.end})`);
    }
  }

  /** Charges `units` of work; fails once the metadata asks for more than its size can justify. */
  spend(units: number): void {
    this.budget -= units;
    if (this.budget < 0) this.fail(`${this.what}: references more data than it holds (shared or cyclic offsets)`);
  }

  u8(pos: number): number {
    this.need(pos, 1, "a byte");
    return this.view.getUint8(pos);
  }

  i16(pos: number): number {
    this.need(pos, 2, "a 16-bit field");
    return this.view.getInt16(pos, true);
  }

  u16(pos: number): number {
    this.need(pos, 2, "a 16-bit field");
    return this.view.getUint16(pos, true);
  }

  i32(pos: number): number {
    this.need(pos, 4, "a 32-bit field");
    return this.view.getInt32(pos, true);
  }

  /** A 64-bit integer, which must be a non-negative safe integer (lengths and offsets are). */
  count64(pos: number, item: string): number {
    this.need(pos, 8, item);
    const value = this.view.getBigInt64(pos, true);
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${this.what}: ${item} is ${value}`);
    return Number(value);
  }

  /** The table at `pos`: its vtable and size checked. */
  table(pos: number, item: string): Table {
    this.spend(1);
    this.need(pos, 4, item);
    const vtable = pos - this.view.getInt32(pos, true);
    this.need(vtable, 4, `the vtable of ${item}`);
    const vtableSize = this.u16(vtable);
    const tableSize = this.u16(vtable + 2);
    if (vtableSize < 4 || vtableSize % 2 !== 0 || tableSize < 4) {
      this.fail(`${this.what}: ${item} has a malformed vtable (sizes ${vtableSize}, ${tableSize})`);
    }
    this.need(vtable, vtableSize, `the vtable of ${item}`);
    this.need(pos, tableSize, item);
    return new Table(this, pos, vtable, vtableSize, tableSize, item);
  }

  /** The root table of the flatbuffer. */
  root(item: string): Table {
    return this.table(this.start + this.i32(this.start), item);
  }
}

/** One flatbuffer table, its fields read by slot. */
class Table {
  constructor(
    private readonly buf: BoundedBuffer,
    readonly pos: number,
    private readonly vtable: number,
    private readonly vtableSize: number,
    private readonly size: number,
    readonly item: string,
  ) {}

  /** Position of field `slot`, or undefined when absent; checked to lie in the table. */
  private field(slot: number, width: number): number | undefined {
    const entry = 4 + 2 * slot;
    if (entry >= this.vtableSize) return undefined;
    const offset = this.buf.u16(this.vtable + entry);
    if (offset === 0) return undefined;
    if (offset + width > this.size) this.buf.fail(`${this.buf.what}: field ${slot} of ${this.item} runs past the table`);
    return this.pos + offset;
  }

  u8(slot: number, absent = 0): number {
    const at = this.field(slot, 1);
    return at === undefined ? absent : this.buf.u8(at);
  }

  i16(slot: number, absent = 0): number {
    const at = this.field(slot, 2);
    return at === undefined ? absent : this.buf.i16(at);
  }

  count64(slot: number, item: string): number {
    const at = this.field(slot, 8);
    return at === undefined ? 0 : this.buf.count64(at, `${item} of ${this.item}`);
  }

  has(slot: number): boolean {
    return this.field(slot, 4) !== undefined;
  }

  /** Where the offset in field `slot` points, or undefined when absent. */
  private target(slot: number): number | undefined {
    const at = this.field(slot, 4);
    if (at === undefined) return undefined;
    const offset = this.buf.i32(at);
    if (offset <= 0) this.buf.fail(`${this.buf.what}: field ${slot} of ${this.item} has offset ${offset}`);
    return at + offset;
  }

  table(slot: number, item: string): Table | undefined {
    const at = this.target(slot);
    return at === undefined ? undefined : this.buf.table(at, item);
  }

  /** Vector in field `slot` of `elementBytes`-wide elements: where its elements start and how many. */
  vector(slot: number, elementBytes: number, item: string): { at: number; length: number } {
    const at = this.target(slot);
    if (at === undefined) return { at: 0, length: 0 };
    const length = this.buf.i32(at) >>> 0;
    this.buf.need(at + 4, length * elementBytes, `${item} (${length} elements)`);
    this.buf.spend(length);
    return { at: at + 4, length };
  }

  /** The tables of a vector of tables in field `slot`. */
  tables(slot: number, item: string): Table[] {
    const { at, length } = this.vector(slot, 4, item);
    const out: Table[] = [];
    for (let i = 0; i < length; i++) {
      const element = at + 4 * i;
      out.push(this.buf.table(element + this.buf.i32(element), `${item}[${i}]`));
    }
    return out;
  }

  /** The string in field `slot` ("" when absent). */
  string(slot: number, item: string): string {
    const { at, length } = this.vector(slot, 1, item);
    return new TextDecoder().decode(this.buf.bytes.subarray(at, at + length));
  }
}

/** Checks a `[KeyValue]` custom-metadata vector (keys and values are strings). */
function checkKeyValues(table: Table, slot: number, item: string): void {
  for (const entry of table.tables(slot, item)) {
    entry.string(0, "a metadata key");
    entry.string(1, "a metadata value");
  }
}

/** Checks a Field table and its children, down to `MAX_FIELD_DEPTH`; returns its name. */
function checkField(buf: BoundedBuffer, field: Table, depth: number): string {
  const name = field.string(0, "a field name");
  const label = `field "${name}"`;
  if (depth > MAX_FIELD_DEPTH) buf.fail(`${buf.what}: ${label} is nested deeper than ${MAX_FIELD_DEPTH} levels`);
  const typeTag = field.u8(2);
  if (typeTag < 1 || typeTag > LAST_TYPE) buf.fail(`${buf.what}: ${label} has unknown type tag ${typeTag}`);
  const type = field.table(3, `the type of ${label}`);
  if (!type) buf.fail(`${buf.what}: ${label} has no type`);
  if (typeTag === TYPE_TIMESTAMP) type.string(1, "a time zone");
  if (typeTag === TYPE_UNION) type.vector(1, 4, "union type ids");
  if (field.has(4)) buf.fail(`${buf.what}: ${label} is dictionary-encoded; shards hold plain tensors`);
  checkKeyValues(field, 6, `the metadata of ${label}`);
  for (const child of field.tables(5, `the children of ${label}`)) checkField(buf, child, depth + 1);
  return name;
}

/** What {@link checkIpcFooter} found: where the footer starts and the record batches it lists. */
export interface IpcFooterLayout {
  footerStart: number;
  batches: FooterBlock[];
}

/**
 * Checks the footer of an Arrow IPC file (`bytes`, magic already checked):
 * its length, and every table, vector and string of it and of its schema,
 * within bounds and within a work budget; no dictionary batches, and
 * record-batch blocks that start between the leading magic and the footer.
 *
 * @param fail throws the caller's error for a problem
 * @param options `batchesInFile: false` when `bytes` holds the footer only
 *   (behind a leading magic), so the blocks point outside it
 */
export function checkIpcFooter(bytes: Uint8Array, fail: Fail, options = { batchesInFile: true }): IpcFooterLayout {
  const size = bytes.byteLength;
  const length = new DataView(bytes.buffer, bytes.byteOffset, size).getInt32(size - TRAILING, true);
  const footerStart = size - TRAILING - length;
  if (length <= 0 || footerStart < LEADING) {
    fail(`footer length ${length} does not fit the file (${size} bytes)`);
  }
  const buf = new BoundedBuffer(bytes, footerStart, size - TRAILING, "the footer", fail);
  const footer = buf.root("the footer");
  const schema = footer.table(1, "the schema");
  if (!schema) fail("the footer has no schema");
  if (schema.i16(0) !== 0) fail("the schema is big-endian; shards are little-endian");
  for (const field of schema.tables(1, "the schema's fields")) checkField(buf, field, 0);
  checkKeyValues(schema, 2, "the schema metadata");
  schema.vector(3, 8, "the schema features");
  checkKeyValues(footer, 4, "the footer metadata");
  if (footer.vector(2, BLOCK_BYTES, "the dictionary blocks").length > 0) {
    fail("it holds dictionary batches; shards hold none");
  }
  const listed = footer.vector(3, BLOCK_BYTES, "the record batch blocks");
  if (listed.length > MAX_RECORD_BATCHES) fail(`it lists ${listed.length} record batches (at most ${MAX_RECORD_BATCHES})`);
  const batches: FooterBlock[] = [];
  for (let i = 0; i < listed.length; i++) {
    const at = listed.at + BLOCK_BYTES * i;
    const block = { offset: buf.count64(at, `record batch ${i}'s offset`) };
    // Readers go by the offset and the message's own lengths (checked in
    // checkRecordBatches); Arrow's JS writer does not always fill in the
    // block's lengths exactly, so they are not held against the file.
    if (options.batchesInFile && (block.offset < LEADING || block.offset + 8 > footerStart)) {
      fail(`record batch ${i} starts at byte ${block.offset}, outside the file's messages (bytes ${LEADING}..${footerStart})`);
    }
    batches.push(block);
  }
  return { footerStart, batches };
}

/**
 * Checks each record batch message the footer lists against the bytes and
 * against `columns` (a shard's `FixedSizeList<float>` columns, in schema
 * order): the message's framing and flatbuffer, one field node per list and
 * per element child, three buffers per column (list validity, element
 * validity, element values), node lengths that agree with the batch length
 * and list size, and buffers inside the body large enough for what the nodes
 * claim. No compression, no variadic buffers.
 *
 * @returns the total number of rows
 */
export function checkRecordBatches(
  bytes: Uint8Array,
  layout: IpcFooterLayout,
  columns: readonly TensorColumnLayout[],
  fail: Fail,
): number {
  let rows = 0;
  layout.batches.forEach((block, b) => {
    const batchFail: Fail = (problem) => fail(`record batch ${b}: ${problem}`);
    const frame = new BoundedBuffer(bytes, block.offset, layout.footerStart, "its message", batchFail);
    if (frame.i32(block.offset) !== -1) batchFail("the message does not start with the continuation marker");
    const length = frame.i32(block.offset + 4);
    const metaStart = block.offset + 8;
    const bodyStart = metaStart + length;
    if (length <= 0 || bodyStart > layout.footerStart) batchFail(`message metadata length ${length} does not fit the file`);
    const meta = new BoundedBuffer(bytes, metaStart, bodyStart, "its message metadata", batchFail);
    const message = meta.root("the message");
    if (message.u8(1) !== RECORD_BATCH) batchFail(`the message has header type ${message.u8(1)}, not a record batch`);
    const bodyLength = message.count64(3, "the body length");
    if (bodyStart + bodyLength > layout.footerStart) {
      batchFail(`its body (${bodyLength} bytes from byte ${bodyStart}) runs into the footer at byte ${layout.footerStart}`);
    }
    checkKeyValues(message, 4, "the message metadata");
    const batch = message.table(2, "the record batch");
    if (!batch) batchFail("the message has no record batch header");
    if (batch.has(3)) batchFail("it is compressed; shards are not");
    if (batch.vector(4, 8, "variadic buffer counts").length > 0) batchFail("it has variadic buffers; shards have none");
    const batchRows = batch.count64(0, "the row count");
    const nodes = batch.vector(1, PAIR_BYTES, "the field nodes");
    const buffers = batch.vector(2, PAIR_BYTES, "the buffers");
    if (nodes.length !== 2 * columns.length || buffers.length !== 3 * columns.length) {
      batchFail(`it has ${nodes.length} field nodes and ${buffers.length} buffers for ${columns.length} tensor columns (expected ${2 * columns.length} and ${3 * columns.length})`);
    }
    const node = (i: number) => ({
      length: meta.count64(nodes.at + PAIR_BYTES * i, `field node ${i}'s length`),
      nulls: meta.count64(nodes.at + PAIR_BYTES * i + 8, `field node ${i}'s null count`),
    });
    const buffer = (i: number) => {
      const offset = meta.count64(buffers.at + PAIR_BYTES * i, `buffer ${i}'s offset`);
      const size = meta.count64(buffers.at + PAIR_BYTES * i + 8, `buffer ${i}'s length`);
      if (offset + size > bodyLength) batchFail(`buffer ${i} (${size} bytes at ${offset}) lies outside the ${bodyLength}-byte body`);
      return size;
    };
    columns.forEach((column, c) => {
      const list = node(2 * c);
      const elements = node(2 * c + 1);
      const label = `column "${column.name}"`;
      if (list.length !== batchRows || elements.length !== batchRows * column.listSize) {
        batchFail(
          `${label} claims ${list.length} rows of ${elements.length} values in a batch of ${batchRows} rows of list size ${column.listSize}`,
        );
      }
      for (const [n, at] of [[list, 3 * c], [elements, 3 * c + 1]] as const) {
        const validity = buffer(at);
        if (n.nulls > n.length || (n.nulls > 0 && validity < Math.ceil(n.length / 8))) {
          batchFail(`${label} claims ${n.nulls} nulls in ${n.length} values with a ${validity}-byte validity bitmap`);
        }
      }
      const values = buffer(3 * c + 2);
      if (values < elements.length * column.elementBytes) {
        batchFail(`${label} claims ${elements.length} values of ${column.elementBytes} bytes in a ${values}-byte buffer`);
      }
    });
    rows += batchRows;
  });
  return rows;
}
