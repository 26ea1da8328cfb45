/**
 * Atomic file output for the fixture builder: write to a temporary name in
 * the same directory, then rename, so a crash never leaves a half-written
 * fixture under its final name.
 *
 * @module
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";

/** Writes `data` to `path` atomically (temp name, then rename), creating the directory. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, data);
  renameSync(temp, path);
}

/** Writes records as JSON Lines (one compact JSON object a line, trailing newline), atomically. */
export function writeJsonl(path: string, records: readonly unknown[]): void {
  writeFileAtomic(path, records.map((r) => JSON.stringify(r)).join("\n") + (records.length > 0 ? "\n" : ""));
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
