/**
 * Reads a runs directory (`<runs>/<label>/seed-<n>/result.json`, docs/REPORT.md)
 * into validated run results, checking that each file sits where its own
 * `label` and `seed` say it should. Cross-run consistency (one model, one task
 * set...) is the aggregator's job; this module knows only the layout.
 *
 * @module
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { readRunResult, RUN_RESULT_FILE, RunResultError, type RunResult } from "./run_result.ts";

/** A validated run result and the file it came from (for error messages). */
export interface LoadedRun {
  path: string;
  result: RunResult;
}

const SEED_DIR = /^seed-(0|[1-9][0-9]*)$/;

/** Entries a reader skips: hidden ones and `_`-prefixed ones (e.g. the default `_report` output). */
function skipped(name: string): boolean {
  return name.startsWith(".") || name.startsWith("_");
}

async function subdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && !skipped(e.name))
    .map((e) => e.name)
    .sort();
}

/**
 * Loads every run under `runsDir`, ordered by label then seed.
 *
 * Every non-skipped directory under `runsDir` is a label and must hold at
 * least one `seed-<n>` directory; every `seed-<n>` directory must hold a
 * result.json whose `label` and `seed` match its path. Other entries inside a
 * label directory are ignored, except directories named like a seed but not
 * matching `seed-<n>` (e.g. `seed_1`, `seed-01`), which are refused as likely
 * mistakes.
 *
 * @throws Error if `runsDir` is missing or holds no runs; RunResultError for a
 *   bad or misplaced result.json
 */
export async function loadRuns(runsDir: string): Promise<LoadedRun[]> {
  const info = await stat(runsDir).catch(() => undefined);
  if (!info?.isDirectory()) throw new Error(`Cannot read runs directory "${runsDir}": not a directory`);
  const runs: LoadedRun[] = [];
  for (const label of await subdirectories(runsDir)) {
    const labelDir = join(runsDir, label);
    const seeds: number[] = [];
    for (const name of await subdirectories(labelDir)) {
      const match = SEED_DIR.exec(name);
      if (match) seeds.push(Number(match[1]));
      else if (/^seed/i.test(name)) {
        throw new Error(`Cannot read runs directory "${runsDir}": "${join(labelDir, name)}" is not named seed-<n>`);
      }
    }
    if (seeds.length === 0) {
      throw new Error(`Cannot read runs directory "${runsDir}": "${labelDir}" holds no seed-<n> directory`);
    }
    for (const seed of seeds.sort((a, b) => a - b)) {
      const path = join(labelDir, `seed-${seed}`, RUN_RESULT_FILE);
      const result = await readRunResult(path);
      if (result.label !== label) {
        throw new RunResultError(path, "label", `is ${JSON.stringify(result.label)} but the directory is "${label}"`);
      }
      if (result.seed !== seed) {
        throw new RunResultError(path, "seed", `is ${result.seed} but the directory is "seed-${seed}"`);
      }
      runs.push({ path, result });
    }
  }
  if (runs.length === 0) throw new Error(`Cannot read runs directory "${runsDir}": it holds no <label>/seed-<n>/result.json`);
  return runs;
}
