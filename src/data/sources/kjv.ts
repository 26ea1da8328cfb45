/**
 * Reader for the King James Version from the Debian package `sword-text-kjv`
 * (CrossWire/eBible.org module `engKJV2006eb`, the 1769 standard text, public
 * domain outside the UK). The module is a SWORD `zText` file set per
 * testament, read here with nothing but `node:zlib`:
 *
 * - `ot.bzs` / `nt.bzs`: one 12-byte record per compressed block
 *   (u32 LE offset into `.bzz`, u32 compressed size, u32 uncompressed size);
 * - `ot.bzv` / `nt.bzv`: one 10-byte record per index slot
 *   (u32 block, u32 offset in the inflated block, u16 size);
 * - `ot.bzz` / `nt.bzz`: the zlib blocks of OSIS XML.
 *
 * Slots follow the KJV versification: slot 0 and 1 are module and testament
 * headings, then each book has a heading slot (holding the opening
 * `<div sID=… type="book">`; a book's last verse holds the closing `eID` one)
 * and each chapter a heading slot (holding `<chapter sID=…>`) before its
 * verses. The reader walks the slots and recognises the headings by their
 * markup, so it needs no versification table; the test checks the known
 * totals (66 books, 1,189 chapters, 31,102 verses).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { inflateSync } from "node:zlib";

/** One chapter of the KJV with its verses as plain text. */
export interface KjvChapter {
  /** `kjv:<OSIS book>.<chapter>`, e.g. `kjv:Gen.1`. */
  id: string;
  /** OSIS book id, e.g. `Gen`, `Matt`. */
  osisBook: string;
  /** Book name as printed in running heads, e.g. `Genesis`. */
  book: string;
  testament: "old" | "new";
  chapter: number;
  /** Verse texts, verse 1 first. */
  verses: string[];
}

const BLOCK_RECORD = 12;
const SLOT_RECORD = 10;

/** Turns one verse's OSIS markup into plain text: notes dropped, tags removed, pilcrows removed. */
export function osisToText(markup: string): string {
  return markup
    .replace(/<note\b[^>]*>[\s\S]*?<\/note>/g, "")
    .replace(/<[^>]+>/g, "")
    .replace(/¶/g, "")
    .replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();
}

/** Reads the raw OSIS markup of every index slot of one testament. */
function readSlots(moduleDir: string, testament: "ot" | "nt"): string[] {
  const path = (ext: string) => join(moduleDir, `${testament}.${ext}`);
  const bzs = readFileSync(path("bzs"));
  const bzv = readFileSync(path("bzv"));
  const bzz = readFileSync(path("bzz"));
  if (bzs.length % BLOCK_RECORD !== 0 || bzv.length % SLOT_RECORD !== 0) {
    throw new Error(
      `Cannot read "${path("bzs")}": index sizes ${bzs.length} and ${bzv.length} are not multiples of ${BLOCK_RECORD} and ${SLOT_RECORD}`,
    );
  }
  const blocks: Buffer[] = [];
  for (let at = 0; at < bzs.length; at += BLOCK_RECORD) {
    const offset = bzs.readUInt32LE(at);
    const size = bzs.readUInt32LE(at + 4);
    if (offset + size > bzz.length) {
      throw new Error(`Cannot read "${path("bzz")}": block ${at / BLOCK_RECORD} ends past the file end`);
    }
    blocks.push(inflateSync(bzz.subarray(offset, offset + size)));
  }
  const slots: string[] = [];
  for (let at = 0; at < bzv.length; at += SLOT_RECORD) {
    const block = bzv.readUInt32LE(at);
    const offset = bzv.readUInt32LE(at + 4);
    const size = bzv.readUInt16LE(at + 8);
    if (size === 0) {
      slots.push("");
      continue;
    }
    const data = blocks[block];
    if (data === undefined || offset + size > data.length) {
      throw new Error(`Cannot read "${path("bzv")}": slot ${at / SLOT_RECORD} points outside block ${block}`);
    }
    slots.push(data.subarray(offset, offset + size).toString("utf8"));
  }
  return slots;
}

/** Reads all chapters of both testaments in canonical order. */
export function readKjv(moduleDir: string): KjvChapter[] {
  const chapters: KjvChapter[] = [];
  for (const testament of ["ot", "nt"] as const) {
    const slots = readSlots(moduleDir, testament);
    let osisBook = "";
    let book = "";
    let current: KjvChapter | undefined;
    for (let i = 2; i < slots.length; i++) {
      const slot = slots[i];
      const bookMark = /<div\b[^>]*\bsID="[^"]*"[^>]*\btype="book"[^>]*>/.exec(slot);
      if (bookMark) {
        osisBook = /\bosisID="([^"]+)"/.exec(bookMark[0])?.[1] ?? "";
        book = /<milestone\b[^>]*\bn="([^"]+)"[^>]*type="x-usfm-h"/.exec(slot)?.[1] ?? osisBook;
        current = undefined;
        continue;
      }
      const chapterMark = /<chapter\b[^>]*\bsID="([^".]+)\.(\d+)"/.exec(slot);
      if (chapterMark) {
        if (chapterMark[1] !== osisBook) {
          throw new Error(`Cannot read "${moduleDir}": chapter ${chapterMark[1]}.${chapterMark[2]} outside book ${osisBook}`);
        }
        current = {
          id: `kjv:${osisBook}.${chapterMark[2]}`,
          osisBook,
          book,
          testament: testament === "ot" ? "old" : "new",
          chapter: Number(chapterMark[2]),
          verses: [],
        };
        chapters.push(current);
        continue;
      }
      if (current === undefined) {
        throw new Error(`Cannot read "${moduleDir}": ${testament} slot ${i} holds a verse before any chapter heading`);
      }
      current.verses.push(osisToText(slot));
    }
  }
  return chapters;
}
