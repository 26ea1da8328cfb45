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

/** Parses JSON Lines text; `file` names the source in errors. */
export function parseJsonl(text: string, file: string): unknown[] {
  return text.split("\n").filter((line) => line.trim() !== "").map((line, i) => {
    try {
      return JSON.parse(line) as unknown;
    } catch (e) {
      throw new Error(`Cannot read "${file}": line ${i + 1} is not JSON (${(e as Error).message})`);
    }
  });
}
