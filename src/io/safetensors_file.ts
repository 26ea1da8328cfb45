/**
 * One safetensors file on disk: a lazy reader and a writer.
 *
 * The reader reads only the 8-byte prefix and the header when opened; each
 * tensor's bytes are fetched by a positioned read when asked for, so a
 * checkpoint larger than memory can be walked block by block (DESIGN.md
 * "Scale": streaming bounds memory). The writer writes one complete file and
 * fsyncs it; atomic naming (temp name, rename) is the caller's job, see
 * `checkpoint.ts`.
 *
 * @module
 */
import { type FileHandle, open } from "node:fs/promises";
import { CheckpointError } from "./errors.ts";
import {
  buildHeader,
  decodeToF32,
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
  close(): Promise<void>;
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
      throw new CheckpointError(
        file,
        `Cannot read "${file}": file ended at byte ${position + done}, expected ${length} bytes from byte ${position}`,
      );
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

function reader(path: string, handle: FileHandle, header: SafetensorsHeader): SafetensorsFile {
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
      const { dtype } = get(name);
      if (!isStoredDtype(dtype)) {
        throw new CheckpointError(
          path,
          `Cannot read tensor "${name}" in "${path}": dtype ${dtype} is not one of F32, F16, BF16`,
        );
      }
      return decodeToF32(await readBytes(name), dtype);
    },
    close: () => handle.close(),
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
 * fsyncs it. Fails if `path` already exists, so a temp name is never clobbered.
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
  const handle = await open(path, "wx");
  try {
    await writeAll(handle, header);
    let dataBytes = 0;
    for (const t of tensors) {
      await writeAll(handle, t.bytes);
      dataBytes += t.bytes.byteLength;
    }
    await handle.sync();
    return dataBytes;
  } finally {
    await handle.close();
  }
}
