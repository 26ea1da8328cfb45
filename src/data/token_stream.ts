/**
 * The pretraining token stream: every document's token ids, each document
 * preceded by `</s>` (OPT puts `</s>` before every sequence, see
 * `tokenizer_json.ts`), so documents are separated by `</s>` and the stream
 * starts with it. Stored as raw little-endian Uint16 (ids < 65,536), the
 * nanoGPT `train.bin` layout, so a trainer can map it and slice windows.
 *
 * @module
 */
import { readFileSync } from "node:fs";

/** Concatenates the documents' ids, each after a `separator` id. */
export function buildTokenStream(docs: Iterable<readonly number[]>, separator: number): Uint16Array {
  const parts: (readonly number[])[] = [];
  let total = 0;
  for (const ids of docs) {
    parts.push(ids);
    total += ids.length + 1;
  }
  const out = new Uint16Array(total);
  let at = 0;
  for (const ids of parts) {
    out[at++] = separator;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new Error(`Token id ${id} does not fit in Uint16`);
      out[at++] = id;
    }
  }
  return out;
}

/** The little-endian bytes of a token stream. */
export function tokenStreamBytes(stream: Uint16Array): Uint8Array {
  const bytes = new Uint8Array(stream.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < stream.length; i++) view.setUint16(2 * i, stream[i], true);
  return bytes;
}

/** Reads a `.bin` token stream written from {@link tokenStreamBytes}. */
export function readTokenStream(path: string): Uint16Array {
  const bytes = readFileSync(path);
  if (bytes.length % 2 !== 0) throw new Error(`Cannot read "${path}": ${bytes.length} bytes is not a whole number of Uint16 ids`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}
