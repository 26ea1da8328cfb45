/**
 * JSON Lines files for the fixture builder and the task loaders; writes are
 * atomic (`writeFileAtomicSync`: temp name, fsync, rename), so a crash never
 * leaves a half-written fixture under its final name.
 *
 * @module
 */
import { writeFileAtomicSync } from "../io/atomic.ts";

/** Writes records as JSON Lines (one compact JSON object a line, trailing newline), atomically. */
export function writeJsonl(path: string, records: readonly unknown[]): void {
  writeFileAtomicSync(path, records.map((r) => JSON.stringify(r)).join("\n") + (records.length > 0 ? "\n" : ""));
}

/** Parses JSON Lines text; `file` names the source in errors. Blank lines are skipped. */
export function parseJsonl(text: string, file: string): unknown[] {
  return parseJsonlLines(text, file).map((r) => r.value);
}

/**
 * Parses JSON Lines text into values with their 1-based line numbers in the
 * file (blank lines are skipped but counted), for messages and ids that point
 * at the line; `file` names the source in errors.
 */
export function parseJsonlLines(text: string, file: string): Array<{ line: number; value: unknown }> {
  const records: Array<{ line: number; value: unknown }> = [];
  text.split("\n").forEach((content, i) => {
    if (content.trim() === "") return;
    try {
      records.push({ line: i + 1, value: JSON.parse(content) as unknown });
    } catch (e) {
      throw new Error(`Cannot read "${file}": line ${i + 1} is not JSON (${(e as Error).message})`);
    }
  });
  return records;
}
