/**
 * The safetensors format as pure functions on bytes: header parsing and
 * validation, header building, and tensor data encoding/decoding
 * (docs/DESIGN.md "Models": weights load from Hugging Face layouts).
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * unsigned header length `N`, `N` bytes of UTF-8 JSON mapping tensor names to
 * `{dtype, shape, data_offsets: [begin, end]}` (plus an optional
 * `__metadata__` string map), then the data region. Offsets are relative to
 * the data region. Validation follows the reference Rust implementation: the
 * tensors, sorted by offset, tile the data region exactly (no overlap, no
 * hole, no trailing bytes) and each byte range matches shape × dtype size.
 *
 * File access lives in `safetensors_file.ts`; this module never touches disk.
 *
 * @module
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../tensor/dtype.ts";
import { CheckpointError } from "./errors.ts";

/** Bytes per element of every dtype the safetensors specification defines. */
const DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;

/** A dtype name from the safetensors specification. */
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** The floating-point dtypes offtune reads and writes (converted to/from f32). */
export type StoredDtype = "F32" | "F16" | "BF16";

// Typed-array views below assume the host is little-endian, as the format is.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("offtune's safetensors codec needs a little-endian host");
}

/** Bytes of the length prefix before the header JSON. */
export const LENGTH_PREFIX_BYTES = 8;

/**
 * Largest header accepted, as in the reference implementation (100 MB): a
 * larger length field means a corrupt file, not a real header.
 */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's header entry; `begin`/`end` are byte offsets into the data region. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A parsed, validated header. */
export interface SafetensorsHeader {
  /** Entries in the order the header JSON lists them. */
  entries: SafetensorsEntry[];
  /** The `__metadata__` map ({} when absent). */
  metadata: Record<string, string>;
  /** Absolute file offset of the data region (8 + header length). */
  dataStart: number;
}

/** A tensor ready to be written: its bytes are already encoded in `dtype`. */
export interface EncodedTensor {
  name: string;
  dtype: StoredDtype;
  shape: number[];
  bytes: Uint8Array;
}

/** Whether `name` is a dtype from the safetensors specification. */
export function isSafetensorsDtype(name: unknown): name is SafetensorsDtype {
  return typeof name === "string" && Object.hasOwn(DTYPE_BYTES, name);
}

/** Whether offtune can convert `dtype` to float32. */
export function isStoredDtype(dtype: string): dtype is StoredDtype {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/** Bytes per element of `dtype`. */
export function dtypeBytes(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

/** Number of elements of a tensor of `shape` (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/**
 * Reads the header length from the first 8 bytes and checks it against the
 * file size, so the caller knows how many header bytes to read.
 *
 * @param prefix the first (up to) 8 bytes of the file
 * @param fileSize total file size in bytes
 * @param file path used in error messages
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < LENGTH_PREFIX_BYTES || prefix.byteLength < LENGTH_PREFIX_BYTES) {
    throw new CheckpointError(
      file,
      `Cannot read "${file}": file size ${fileSize} is smaller than the 8-byte header length field`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX_BYTES);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(fileSize - LENGTH_PREFIX_BYTES)) {
    throw new CheckpointError(
      file,
      `Cannot read "${file}": header length ${length} exceeds file size ${fileSize}`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      file,
      `Cannot read "${file}": header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  if (length < 2n) {
    throw new CheckpointError(file, `Cannot read "${file}": header length ${length} is too small for a JSON object`);
  }
  return Number(length);
}

/**
 * Parses and validates the header JSON.
 *
 * @param json the `headerLength` bytes after the length prefix
 * @param fileSize total file size, to check the data region is complete
 * @param file path used in error messages
 */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const fail = (problem: string): never => {
    throw new CheckpointError(file, `Cannot read "${file}": ${problem}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail("header JSON is not an object");
  }
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(value, fail);
    } else {
      entries.push(parseEntry(name, value, fail));
    }
  }
  const dataStart = LENGTH_PREFIX_BYTES + json.byteLength;
  checkTiling(entries, fileSize - dataStart, fail);
  return { entries, metadata, dataStart };
}

function parseMetadata(value: unknown, fail: (p: string) => never): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("__metadata__ is not an object");
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") fail(`__metadata__ value "${k}" is not a string`);
    out[k] = v as string;
  }
  return out;
}

function isNonNegativeInteger(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function parseEntry(name: string, value: unknown, fail: (p: string) => never): SafetensorsEntry {
  if (typeof value !== "object" || value === null) fail(`tensor "${name}" has no header object`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDtype(dtype)) fail(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    fail(`tensor "${name}" has invalid shape ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    fail(`tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as number[];
  if (end < begin) fail(`tensor "${name}" has data_offsets [${begin}, ${end}] in the wrong order`);
  const d = dtype as SafetensorsDtype;
  const s = shape as number[];
  const expected = elementCount(s) * DTYPE_BYTES[d];
  if (end - begin !== expected) {
    fail(
      `tensor "${name}" spans ${end - begin} bytes but shape [${s.join(", ")}] × ${d} needs ${expected}`,
    );
  }
  return { name, dtype: d, shape: s, begin, end };
}

/** The tensors, sorted by offset, must tile [0, dataBytes) exactly. */
function checkTiling(entries: SafetensorsEntry[], dataBytes: number, fail: (p: string) => never): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor) {
      fail(`tensor "${e.name}" at bytes [${e.begin}, ${e.end}] overlaps tensor "${previous!.name}" ending at ${cursor}`);
    }
    if (e.begin > cursor) {
      fail(`tensor "${e.name}" starts at byte ${e.begin}, leaving a gap after byte ${cursor}`);
    }
    cursor = e.end;
    previous = e;
  }
  if (cursor > dataBytes) {
    fail(
      `data is truncated: tensor "${previous!.name}" ends at byte ${cursor} of the data region but only ${dataBytes} bytes follow the header`,
    );
  }
  if (cursor < dataBytes) {
    fail(`${dataBytes - cursor} trailing bytes follow the last tensor (data region is ${dataBytes} bytes, tensors cover ${cursor})`);
  }
}

/**
 * Builds the length prefix and header JSON for tensors laid out in the given
 * order, padded with spaces so the data region starts 8-byte aligned (as the
 * reference writer does). Returns the bytes to write before the data.
 */
export function buildHeader(
  tensors: readonly { name: string; dtype: StoredDtype; shape: number[]; byteLength: number }[],
  metadata: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || Object.hasOwn(header, t.name)) {
      throw new Error(`Cannot write tensor "${t.name}": the name is reserved or repeated`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, LENGTH_PREFIX_BYTES);
  return out;
}

/**
 * Converts raw little-endian tensor bytes to float32: into the front of
 * `out` when given (returned as a view of exactly the values), else a view
 * of `bytes` (F32) or a fresh array.
 *
 * @param bytes the tensor's bytes; must start at an offset aligned to the dtype size
 */
export function decodeToF32(bytes: Uint8Array, dtype: StoredDtype, out?: Float32Array): Float32Array {
  const values = bytes.byteLength / dtypeBytes(dtype);
  const target = out?.subarray(0, values);
  switch (dtype) {
    case "F32": {
      const view = new Float32Array(bytes.buffer, bytes.byteOffset, values);
      if (!target) return view;
      target.set(view);
      return target;
    }
    case "F16":
      return f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, values), target);
    case "BF16":
      return bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, values), target);
  }
}

/**
 * Encodes float32 data as little-endian bytes of `dtype` (F16/BF16 rounded to
 * nearest even). Always returns a fresh buffer, so a caller may reuse `data`.
 */
export function encodeFromF32(data: Float32Array, dtype: StoredDtype): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(data.slice().buffer);
    case "F16": {
      const bits = f32ToF16(data);
      return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    }
    case "BF16": {
      const bits = f32ToBf16(data);
      return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    }
  }
}
