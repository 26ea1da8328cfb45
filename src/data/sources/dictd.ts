/**
 * Reader for dictionary databases in the dictd format, as Debian's `dict-*`
 * packages install them in `/usr/share/dictd`: `<name>.index` lists
 * `headword TAB offset TAB length` (numbers in dictd's base-64), and
 * `<name>.dict.dz` is the gzip-compatible (dictzip) text the offsets point
 * into. Several headwords may share one entry; each entry is read once, in
 * file order. Turning an entry into prose is the caller's job
 * (src/data/supplement.ts), since every dictionary marks up differently.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

/** One dictionary entry: its byte offset in the text (a stable id) and its raw text. */
export interface DictdEntry {
  offset: number;
  /** The first headword the index lists for the entry. */
  headword: string;
  text: string;
}

/** Where Debian's dict-* packages install their databases. */
export const DICTD_DIR = "/usr/share/dictd";

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Decodes one of dictd's base-64 numbers (most significant digit first). */
export function decodeDictdNumber(digits: string): number {
  let value = 0;
  for (const c of digits) {
    const d = BASE64.indexOf(c);
    if (d < 0) throw new Error(`"${digits}" is not a dictd base-64 number`);
    value = value * 64 + d;
  }
  return value;
}

/**
 * Reads every entry of the database `name` in `dir`, skipping the
 * `00-…` records that describe the database itself.
 */
export function readDictd(name: string, dir = DICTD_DIR): DictdEntry[] {
  const indexPath = join(dir, `${name}.index`);
  const dictPath = join(dir, `${name}.dict.dz`);
  if (!existsSync(indexPath) || !existsSync(dictPath)) {
    throw new Error(`Cannot find the dictd database "${name}" in "${dir}": install the Debian package dict-${name}`);
  }
  const text = gunzipSync(readFileSync(dictPath));
  const byOffset = new Map<number, DictdEntry>();
  const lines = readFileSync(indexPath, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === "") continue;
    const fields = lines[i].split("\t");
    if (fields.length < 3) throw new Error(`Cannot read "${indexPath}" line ${i + 1}: expected 3 tab-separated fields`);
    const [headword, offsetDigits, lengthDigits] = fields;
    if (headword.startsWith("00-") || headword.startsWith("00database")) continue;
    const offset = decodeDictdNumber(offsetDigits);
    const length = decodeDictdNumber(lengthDigits);
    if (offset + length > text.length) {
      throw new Error(`Cannot read "${indexPath}" line ${i + 1}: entry ends at byte ${offset + length}, past the ${text.length}-byte text`);
    }
    if (byOffset.has(offset)) continue;
    byOffset.set(offset, { offset, headword, text: text.subarray(offset, offset + length).toString("utf8") });
  }
  return [...byOffset.values()].sort((a, b) => a.offset - b.offset);
}
