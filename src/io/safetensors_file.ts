/**
 * One safetensors file on disk: a lazy reader and a writer.
 *
 * The reader reads only the 8-byte prefix and the header when opened; each
 * tensor's bytes are fetched by a positioned read when asked for, so a
 * checkpoint larger than memory can be walked block by block (docs/DESIGN.md
 * "Scale": streaming bounds memory). The writer writes one complete file and
 * fsyncs it; atomic naming (temp name, rename) is the caller's job, see
 * `checkpoint.ts`.
 *
 * @module
 */
import { closeSync, openSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { CheckpointError, fileWriteError } from "./errors.ts";
import { readFullySync } from "./read_fully.ts";
import {
  buildHeader,
  decodeToF32,
  dtypeBytes,
  type EncodedTensor,
  isStoredDtype,
  LENGTH_PREFIX_BYTES,
  parseHeader,
  parseHeaderLength,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./safetensors.ts";

/** An open safetensors file whose tensors are read on demand. */
export interface SafetensorsFile {
  readonly path: string;
  readonly header: SafetensorsHeader;
  /** The header entry for `name`, or undefined if the file has no such tensor. */
  entry(name: string): SafetensorsEntry | undefined;
  /** The tensor's raw little-endian bytes, in a fresh (aligned) buffer. */
  readBytes(name: string): Promise<Uint8Array>;
  /** The tensor converted to float32 (dtype F32, F16 or BF16). */
  readF32(name: string): Promise<Float32Array>;
  /**
   * Rows `[start, start + count)` of the tensor's first axis, converted to
   * float32, read synchronously: a vocabulary matrix `[V, d]` streamed chunk
   * by chunk inside a synchronous pipeline stage, never held whole. With
   * `out` (at least `count` rows long) the values land in its front and a
   * view of them is returned: a caller sweeping a tensor reuses one buffer,
   * and the file reuses one byte buffer, so no read allocates.
   */
  readRowsF32Sync(name: string, start: number, count: number, out?: Float32Array): Float32Array;
  close(): Promise<void>;
}

/** The error of a read of `length` bytes at `position` that met the end of `file` after `done`. */
function truncated(file: string, position: number, done: number, length: number): CheckpointError {
  return new CheckpointError(
    file,
    `Cannot read "${file}": file ended at byte ${position + done}, expected ${length} bytes from byte ${position}`,
  );
}

/** Reads exactly `length` bytes at `position` into a fresh buffer, or fails naming the file. */
async function readExactly(
  handle: FileHandle,
  length: number,
  position: number,
  file: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      throw truncated(file, position, done, length);
    }
    done += bytesRead;
  }
  return out;
}

/**
 * Opens a safetensors file and validates its header; no tensor data is read.
 *
 * @throws CheckpointError if the file is missing or its header is malformed
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (e) {
    throw new CheckpointError(path, `Cannot open "${path}": ${(e as Error).message}`, { cause: e });
  }
  try {
    const { size } = await handle.stat();
    const prefix = await readExactly(handle, Math.min(LENGTH_PREFIX_BYTES, size), 0, path);
    const headerLength = parseHeaderLength(prefix, size, path);
    const json = await readExactly(handle, headerLength, LENGTH_PREFIX_BYTES, path);
    const header = parseHeader(json, size, path);
    return reader(path, handle, header);
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/**
 * Reads exactly `length` bytes at `position` from descriptor `fd` into the
 * front of `out` (default a fresh buffer), or fails naming the file.
 */
function readExactlySync(fd: number, length: number, position: number, file: string, out = new Uint8Array(length)): Uint8Array {
  const bytes = out.subarray(0, length);
  const done = readFullySync(fd, bytes, position);
  if (done < length) throw truncated(file, position, done, length);
  return bytes;
}

/** The tensor's dtype if offtune can decode it, else a CheckpointError naming tensor and file. */
function decodableDtype(path: string, name: string, dtype: string) {
  if (!isStoredDtype(dtype)) {
    throw new CheckpointError(path, `Cannot read tensor "${name}" in "${path}": dtype ${dtype} is not one of F32, F16, BF16`);
  }
  return dtype;
}

function reader(path: string, handle: FileHandle, header: SafetensorsHeader): SafetensorsFile {
  let syncFd: number | undefined; // opened on the first row read
  let rowBytes = new Uint8Array(0); // reused by row reads into a caller's buffer
  const byName = new Map(header.entries.map((e) => [e.name, e]));
  const get = (name: string): SafetensorsEntry => {
    const e = byName.get(name);
    if (!e) throw new CheckpointError(path, `Cannot read tensor "${name}": "${path}" has no such tensor`);
    return e;
  };
  const readBytes = (name: string): Promise<Uint8Array> => {
    const e = get(name);
    return readExactly(handle, e.end - e.begin, header.dataStart + e.begin, path);
  };
  return {
    path,
    header,
    entry: (name) => byName.get(name),
    readBytes,
    async readF32(name) {
      const dtype = decodableDtype(path, name, get(name).dtype);
      return decodeToF32(await readBytes(name), dtype);
    },
    readRowsF32Sync(name, start, count, out) {
      const e = get(name);
      const dtype = decodableDtype(path, name, e.dtype);
      const rows = e.shape[0] ?? 1;
      if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= rows)) {
        throw new RangeError(`Cannot read rows [${start}, ${start + count}) of tensor "${name}" in "${path}": it has ${rows} rows`);
      }
      const bytesPerRow = rows === 0 ? 0 : (e.end - e.begin) / rows;
      const length = count * bytesPerRow;
      if (out && out.length < length / dtypeBytes(dtype)) {
        throw new RangeError(`Cannot read ${count} rows of tensor "${name}" into ${out.length} values`);
      }
      syncFd ??= openSync(path, "r");
      const position = header.dataStart + e.begin + start * bytesPerRow;
      if (!out) return decodeToF32(readExactlySync(syncFd, length, position, path), dtype);
      if (rowBytes.length < length) rowBytes = new Uint8Array(length);
      return decodeToF32(readExactlySync(syncFd, length, position, path, rowBytes), dtype, out);
    },
    async close() {
      if (syncFd !== undefined) closeSync(syncFd);
      syncFd = undefined;
      await handle.close();
    },
  };
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
    done += bytesWritten;
  }
}

/**
 * Writes a complete safetensors file (header, then the tensors in order) and
 * fsyncs it. Fails if `path` already exists, so a temp name is never clobbered;
 * a failed write throws a CheckpointError naming `path` (see `fileWriteError`).
 *
 * @returns the number of data bytes written (the sum of tensor sizes)
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly EncodedTensor[],
  metadata: Record<string, string>,
): Promise<number> {
  const header = buildHeader(
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.bytes.byteLength })),
    metadata,
  );
  const handle = await open(path, "wx").catch((e) => Promise.reject(fileWriteError(path, e)));
  try {
    await writeAll(handle, header);
    let dataBytes = 0;
    for (const t of tensors) {
      await writeAll(handle, t.bytes);
      dataBytes += t.bytes.byteLength;
    }
    await handle.sync();
    return dataBytes;
  } catch (e) {
    throw fileWriteError(path, e);
  } finally {
    await handle.close();
  }
}
