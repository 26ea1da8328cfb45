/**
 * `kjv_verse_ending`: complete a held-out King James verse (HellaSwag-style
 * continuation). The context is the chapter heading, the previous verse and
 * the first half of the verse, cut at the clause mark (`,` `;` `:`) nearest
 * its middle; the choices are the true second half and the second halves of
 * three other held-out verses of the same split. A language model that knows
 * KJV English and follows the clause beats chance (25%) without tuning.
 *
 * @module
 */
import { countWords } from "../text.ts";
import { placeGold, sampleDistractors } from "./passages.ts";
import { type Candidate, TASK_SPLITS, type TaskBuildContext, type TaskDefinition, type TaskSplit } from "./types.ts";

/** Shortest verse used, in words. */
const MIN_VERSE_WORDS = 10;
/** Each half keeps at least this many words. */
const MIN_HALF_WORDS = 4;
/** The previous verse is included only when the context stays within this many words. */
const MAX_CONTEXT_WORDS = 45;

/** Cuts a verse at the clause mark nearest its middle: `[first half with the mark, rest]`. */
export function splitVerse(verse: string): [string, string] | undefined {
  const words = verse.split(" ");
  if (words.length < MIN_VERSE_WORDS) return undefined;
  let best = -1;
  for (let i = MIN_HALF_WORDS - 1; i < words.length - MIN_HALF_WORDS; i++) {
    if (!/[,;:]$/.test(words[i])) continue;
    if (best < 0 || Math.abs(i + 1 - words.length / 2) < Math.abs(best + 1 - words.length / 2)) best = i;
  }
  if (best < 0) return undefined;
  return [words.slice(0, best + 1).join(" "), words.slice(best + 1).join(" ")];
}

/** The task definition. */
export const kjvVerseEnding: TaskDefinition = {
  name: "kjv_verse_ending",
  description:
    "Complete a held-out King James Version verse: choose its true second half among the second halves of other held-out verses.",
  choices: 4,
  build(ctx: TaskBuildContext): Candidate[] {
    const halves: Array<{ doc: string; split: TaskSplit; context: string; ending: string }> = [];
    for (const chapter of ctx.sources.kjv) {
      const split = ctx.splitOfDoc(chapter.id, "kjv");
      if (split === undefined) continue;
      chapter.verses.forEach((verse, v) => {
        const cut = splitVerse(verse);
        if (cut === undefined) return;
        const heading = `${chapter.book} ${chapter.chapter}\n\n`;
        const previous = v > 0 ? `${chapter.verses[v - 1]}\n` : "";
        const withPrevious = countWords(previous) + countWords(cut[0]) <= MAX_CONTEXT_WORDS;
        halves.push({
          doc: chapter.id,
          split,
          context: heading + (withPrevious ? previous : "") + cut[0],
          ending: cut[1],
        });
      });
    }
    const candidates: Candidate[] = [];
    for (const split of TASK_SPLITS) {
      const rng = ctx.rng(split);
      const items = halves.filter((h) => h.split === split);
      const pool = items.map((h) => h.ending);
      for (const h of items) {
        const distractors = sampleDistractors(rng, pool, h.ending, 3);
        if (distractors === undefined) continue;
        const placed = placeGold(rng, ` ${h.ending}`, distractors.map((d) => ` ${d}`));
        candidates.push({ doc: h.doc, split, label: "", context: h.context, ...placed });
      }
    }
    return candidates;
  },
};
