/**
 * The supplementary pretraining text: four English dictionaries from Debian's
 * `dict-*` packages (GCIDE — Webster's 1913 — FOLDOC, the Jargon File and
 * Bierce's *Devil's Dictionary*), one document an entry. They only ever join
 * the pretraining train stream of the larger fixture model (`train_large.bin`,
 * fixtures/data/README.md): they never reach the validation, calibration or
 * holdout splits, so the tokenizer, those splits and the tasks stay exactly
 * what the six core sources make them. Entries that share a 13-word n-gram
 * with held-out, validation or calibration text are dropped (the same
 * contamination rule the tasks use, applied from the other side).
 *
 * GCIDE mixes Webster's 1913 senses with senses copied from WordNet 1.5;
 * those are dropped, since WordNet synsets are held out for three tasks.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { DICTD_DIR, type DictdEntry, readDictd } from "./sources/dictd.ts";
import type { SourceLocation } from "./packages.ts";

/** The supplementary dictionaries, by dictd database name. */
export const SUPPLEMENT_NAMES = ["gcide", "foldoc", "jargon", "devil"] as const;

/** One of {@link SUPPLEMENT_NAMES}. */
export type SupplementName = (typeof SUPPLEMENT_NAMES)[number];

/** A supplementary document: one dictionary entry as pretraining prose. */
export interface SupplementDocument {
  /** `<dictionary>:<byte offset of the entry>`, e.g. `gcide:1234567`. */
  id: string;
  source: SupplementName;
  group: string;
  text: string;
}

/** Licences of the supplementary sources, for the fixtures manifest. */
export const SUPPLEMENT_LICENCES: Readonly<Record<SupplementName, string>> = {
  gcide: "GCIDE 0.48 (Webster's 1913, public domain, with later additions): GPL-2+",
  foldoc: "FOLDOC: GNU Free Documentation License 1.1+",
  jargon: "The Jargon File 4.4.7: public domain",
  devil: "The Devil's Dictionary (Bierce, 1911): public domain",
};

/** The installed version of a Debian package, read from dpkg's status file. */
export function debianPackageVersion(name: string, statusFile = "/var/lib/dpkg/status"): string {
  if (!existsSync(statusFile)) throw new Error(`Cannot read "${statusFile}": not a Debian system`);
  for (const stanza of readFileSync(statusFile, "utf8").split("\n\n")) {
    if (!new RegExp(`^Package: ${name.replace(/[.+]/g, "\\$&")}$`, "m").test(stanza)) continue;
    if (!/^Status: .* installed$/m.test(stanza)) break;
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (version !== undefined) return version.trim();
  }
  throw new Error(`The Debian package ${name} is not installed (apt-get install ${name})`);
}

/** Joins each paragraph's lines into one line; paragraphs (blank-line separated) become lines. */
function unwrapParagraphs(paragraphs: readonly string[]): string {
  return paragraphs
    .map((p) => p.split("\n").map((line) => line.trim()).filter((line) => line !== "").join(" "))
    .filter((p) => p !== "")
    .join("\n");
}

/** Drops the `{…}` cross-reference braces the dictd sources use, keeping the words. */
function dropLinkBraces(text: string): string {
  return text.replace(/[{}]/g, "");
}

/** A GCIDE source tag naming where a sense came from, e.g. `[1913 Webster]`, `[PJC]` or `[Webster 1913 Suppl. +PJC]`. */
const SOURCE_TAG = /\s*\[[^\][\n]*\b(?:Webster|PJC|WordNet|Century Dict|RDH|RH|AS)\b[^\][\n]*\]/g;

/**
 * A GCIDE entry as prose: WordNet-sourced paragraphs and the source-tag lines
 * removed, the pronunciation (`\Ad*vise"\`) cut from the head, links unbraced.
 * Empty when nothing but WordNet senses was left.
 */
export function gcideText(entry: string): string {
  const paragraphs = entry.split(/\n\s*\n/).filter((p) => !p.includes("[WordNet"));
  // Tags and pronunciations may wrap across lines: cut them from the unwrapped paragraphs.
  const kept = unwrapParagraphs(paragraphs).split("\n")
    .map((p) => p.replace(SOURCE_TAG, "").replace(/\s*\\[^\\\n]*\\/g, "").trim())
    .filter((p) => p !== "");
  return dropLinkBraces(kept.join("\n"));
}

/** A FOLDOC or Jargon File entry as prose: unbraced, paragraphs unwrapped. */
export function glossaryText(entry: string): string {
  return dropLinkBraces(unwrapParagraphs(entry.split(/\n\s*\n/)));
}

/** A Devil's Dictionary entry as prose: `_italic_` marks and `{…}` braces dropped, paragraphs unwrapped. */
export function devilText(entry: string): string {
  return dropLinkBraces(unwrapParagraphs(entry.replace(/_([^_]+)_/g, "$1").split(/\n\s*\n/)));
}

const TEXT_OF: Readonly<Record<SupplementName, (entry: string) => string>> = {
  gcide: gcideText,
  foldoc: glossaryText,
  jargon: glossaryText,
  devil: devilText,
};

/** Documents shorter than this many characters are dropped (bare cross-references). */
export const MIN_SUPPLEMENT_CHARS = 40;

/** Every supplementary dictionary's entries as documents, plus where each was read from. */
export function readSupplement(dir = DICTD_DIR): { docs: SupplementDocument[]; locations: SourceLocation[] } {
  const docs: SupplementDocument[] = [];
  const locations: SourceLocation[] = [];
  for (const name of SUPPLEMENT_NAMES) {
    const entries: DictdEntry[] = readDictd(name, dir);
    locations.push({ name: `dict-${name}`, version: debianPackageVersion(`dict-${name}`), dir });
    for (const entry of entries) {
      const text = TEXT_OF[name](entry.text);
      if (text.length < MIN_SUPPLEMENT_CHARS) continue;
      const id = `${name}:${entry.offset}`;
      docs.push({ id, source: name, group: id, text });
    }
  }
  return { docs, locations };
}
