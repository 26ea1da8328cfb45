/**
 * Passages and distractors shared by the task builders: runs of whole
 * sentences within a word budget, and sampling distinct distractors from a
 * pool.
 *
 * @module
 */
import type { Rng } from "../random.ts";
import { countWords, splitSentences } from "../text.ts";

/**
 * Cuts text into consecutive, non-overlapping runs of whole sentences of
 * `minWords..maxWords` words each. A sentence longer than `maxWords` ends the
 * current run and is skipped.
 */
export function sentenceWindows(text: string, minWords: number, maxWords: number): string[] {
  const windows: string[] = [];
  let current: string[] = [];
  let words = 0;
  for (const sentence of splitSentences(text)) {
    const n = countWords(sentence);
    if (n > maxWords) {
      current = [];
      words = 0;
      continue;
    }
    if (words + n > maxWords) {
      current = [];
      words = 0;
    }
    current.push(sentence);
    words += n;
    if (words >= minWords) {
      windows.push(current.join(" "));
      current = [];
      words = 0;
    }
  }
  return windows;
}

/**
 * Draws `count` distinct distractors from `pool`, none equal (case- and
 * space-insensitively) to the gold or to any string in `exclude`. Returns
 * `undefined` when the pool cannot supply enough after a bounded number of
 * draws.
 */
export function sampleDistractors(
  rng: Rng,
  pool: readonly string[],
  gold: string,
  count: number,
  exclude: Iterable<string> = [],
): string[] | undefined {
  const norm = (s: string) => s.trim().toLowerCase();
  const taken = new Set([norm(gold), ...[...exclude].map(norm)]);
  const out: string[] = [];
  for (let tries = 0; out.length < count && tries < 50 * count; tries++) {
    const candidate = rng.pick(pool);
    if (taken.has(norm(candidate))) continue;
    taken.add(norm(candidate));
    out.push(candidate);
  }
  return out.length === count ? out : undefined;
}

/** Puts the gold among the distractors at a random position; returns the choices and the gold index. */
export function placeGold(rng: Rng, gold: string, distractors: readonly string[]): { choices: string[]; gold: number } {
  const at = rng.int(distractors.length + 1);
  const choices = [...distractors.slice(0, at), gold, ...distractors.slice(at)];
  return { choices, gold: at };
}
