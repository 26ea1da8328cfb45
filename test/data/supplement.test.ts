import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeDictdNumber, DICTD_DIR, readDictd } from "../../src/data/sources/dictd.ts";
import {
  debianPackageVersion,
  devilText,
  gcideText,
  glossaryText,
  readSupplement,
  SUPPLEMENT_NAMES,
} from "../../src/data/supplement.ts";

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/** Encodes a number in dictd's base 64 (the writer side, to build databases by hand). */
function encode(n: number): string {
  let s = "";
  do {
    s = B64[n % 64] + s;
    n = Math.floor(n / 64);
  } while (n > 0);
  return s;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "offtune-dictd-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `<name>.index` and `<name>.dict.dz` holding `entries` (with extra headwords sharing an entry). */
async function writeDatabase(name: string, entries: string[], aliases: Record<number, string[]> = {}) {
  const texts = ["database info\n", ...entries];
  const offsets: number[] = [];
  let at = 0;
  for (const t of texts) {
    offsets.push(at);
    at += Buffer.byteLength(t);
  }
  const lines = [`00-database-info\t${encode(0)}\t${encode(Buffer.byteLength(texts[0]))}`];
  entries.forEach((t, i) => {
    for (const word of [`word${i}`, ...(aliases[i] ?? [])]) {
      lines.push(`${word}\t${encode(offsets[i + 1])}\t${encode(Buffer.byteLength(t))}`);
    }
  });
  await writeFile(join(dir, `${name}.index`), lines.sort().join("\n") + "\n");
  await writeFile(join(dir, `${name}.dict.dz`), gzipSync(Buffer.from(texts.join(""))));
}

describe("dictd databases", () => {
  it("decodes dictd's base-64 numbers", () => {
    expect(decodeDictdNumber("A")).toBe(0);
    expect(decodeDictdNumber("BVR")).toBe(64 * 64 + 21 * 64 + 17);
    expect(decodeDictdNumber(encode(39_811_749))).toBe(39_811_749);
    expect(() => decodeDictdNumber("B*")).toThrow(/"B\*" is not a dictd base-64 number/);
  });

  it("reads each entry once, in file order, without the database records", async () => {
    await writeDatabase("toy", ['Alpha \\Al"pha\\, n. first.\n', "Beta, n. second – ü.\n"], { 1: ["aaa-beta"] });
    const entries = readDictd("toy", dir);
    expect(entries.map((e) => e.text)).toEqual(["Alpha \\Al\"pha\\, n. first.\n", "Beta, n. second – ü.\n"]);
    expect(entries[0].offset).toBe("database info\n".length);
    expect(entries[1].headword).toBe("aaa-beta"); // the index is sorted; the first headword names the entry
  });

  it("names the index and line of an entry past the end, and the package of a missing database", async () => {
    await writeFile(join(dir, "bad.index"), `w\t${encode(0)}\t${encode(10)}\nx\t${encode(5)}\t${encode(100)}\n`);
    await writeFile(join(dir, "bad.dict.dz"), gzipSync(Buffer.from("0123456789abc")));
    expect(() => readDictd("bad", dir)).toThrow(/bad\.index" line 2: entry ends at byte 105, past the 13-byte text/);
    expect(() => readDictd("absent", dir)).toThrow(/install the Debian package dict-absent/);
  });
});

describe("dictionary entries as prose", () => {
  it("GCIDE: drops WordNet senses, source tags and pronunciations, unwraps lines", () => {
    const entry = [
      "Advise \\Ad*vise\"\\, v. t. [imp. & p. p. {Advised}.]",
      "   1. To give advice to; to counsel. \"I shall no",
      "      more advise thee.\" --Milton.",
      "      [1913 Webster]",
      "",
      "   2. to inform; -- with of.",
      "      [Webster 1913 Suppl.]",
      "",
      "   3. make aware of; \"have you been informed?\"",
      "      [WordNet 1.5]",
      "",
    ].join("\n");
    expect(gcideText(entry)).toBe(
      "Advise, v. t. [imp. & p. p. Advised.] 1. To give advice to; to counsel. \"I shall no more advise thee.\" --Milton.\n" +
        "2. to inform; -- with of.",
    );
    expect(gcideText("au \\a.u.\\ n.\n   1. the unit.\n   [WordNet 1.5]\n")).toBe("");
  });

  it("FOLDOC/Jargon: links unbraced; Devil's Dictionary: italics unmarked", () => {
    expect(glossaryText("bar\n /bar/, n.\n\n    1. The second {metasyntactic\n    variable}.\n")).toBe(
      "bar /bar/, n.\n1. The second metasyntactic variable.",
    );
    expect(devilText("ZOOLOGY, n.  The House Fly (_Musca\nmaledicta_).\n")).toBe("ZOOLOGY, n.  The House Fly (Musca maledicta).");
  });

  it("reads a package's version from dpkg's status, and says what to install when it is absent", async () => {
    const status = join(dir, "status");
    await writeFile(
      status,
      "Package: dict-gcide\nStatus: install ok installed\nVersion: 0.48.5+nmu2\n\nPackage: dict-jargon\nStatus: deinstall ok config-files\nVersion: 4.4.7-3.1\n",
    );
    expect(debianPackageVersion("dict-gcide", status)).toBe("0.48.5+nmu2");
    expect(() => debianPackageVersion("dict-jargon", status)).toThrow(/dict-jargon is not installed \(apt-get install dict-jargon\)/);
  });
});

const installed = SUPPLEMENT_NAMES.every((n) => existsSync(join(DICTD_DIR, `${n}.index`)));

describe.skipIf(!installed)("the installed dictionaries (needs Debian dict-gcide, dict-foldoc, dict-jargon, dict-devil)", () => {
  it("turn into clean prose documents with unique ids and no WordNet senses", () => {
    const { docs, locations } = readSupplement();
    expect(locations.map((l) => l.name)).toEqual(SUPPLEMENT_NAMES.map((n) => `dict-${n}`));
    expect(new Set(docs.map((d) => d.id)).size).toBe(docs.length);
    const bySource = Object.fromEntries(SUPPLEMENT_NAMES.map((n) => [n, docs.filter((d) => d.source === n).length]));
    expect(bySource.gcide).toBeGreaterThan(100_000);
    expect(bySource.devil).toBeGreaterThan(900);
    for (const d of docs) {
      if (d.text.includes("[WordNet") || /[{}]/.test(d.text) || /\[1913 Webster\]/.test(d.text)) {
        throw new Error(`${d.id} kept markup: ${d.text.slice(0, 200)}`);
      }
    }
  }, 120_000);
});
