/**
 * `lastword_cloze`: LAMBADA-style last-word prediction on held-out prose
 * (Brown, Moby-Dick, State of the Union). The context is a run of whole
 * sentences whose final word is cut off; the choices are that word and three
 * other sentence-final words from held-out documents of the same source and
 * split. A language model that follows the passage beats chance (25%)
 * without tuning.
 *
 * @module
 */
import type { SourceName } from "../split.ts";
import { countWords, splitSentences } from "../text.ts";
import { placeGold, sampleDistractors } from "./passages.ts";
import { type Candidate, TASK_SPLITS, type TaskBuildContext, type TaskDefinition, type TaskSplit } from "./types.ts";

/** Context length bounds in words (the cut word not counted). */
const MIN_WORDS = 15;
const MAX_WORDS = 45;
/** Sentences skipped after a target, so consecutive items share little context. */
const STRIDE = 3;

/** A sentence ending in a lowercase word of 4+ letters and a period: the word is the target. */
const TARGET = /^(.*\s)([a-z]{4,})\.$/s;

interface Cloze {
  doc: string;
  source: SourceName;
  split: TaskSplit;
  context: string;
  word: string;
}

/** The cloze targets of one document's text. */
function clozesOf(doc: string, source: SourceName, split: TaskSplit, text: string): Cloze[] {
  const sentences = splitSentences(text);
  const out: Cloze[] = [];
  for (let i = 0; i < sentences.length; i++) {
    const match = TARGET.exec(sentences[i]);
    if (!match) continue;
    const parts = [match[1].trimEnd()];
    let words = countWords(parts[0]);
    for (let j = i - 1; j >= 0; j--) {
      const n = countWords(sentences[j]);
      if (words + n > MAX_WORDS) break;
      parts.unshift(sentences[j]);
      words += n;
    }
    if (words < MIN_WORDS) continue;
    out.push({ doc, source, split, context: parts.join(" "), word: match[2] });
    i += STRIDE - 1;
  }
  return out;
}

/** The task definition. */
export const lastwordCloze: TaskDefinition = {
  name: "lastword_cloze",
  description:
    "Last-word cloze (LAMBADA-style) on held-out Brown, Moby-Dick and State of the Union passages: pick the word that ends the passage.",
  choices: 4,
  build(ctx: TaskBuildContext): Candidate[] {
    const texts: Array<{ doc: string; source: SourceName; text: string }> = [
      ...ctx.sources.brown.map((b) => ({ doc: b.id, source: "brown" as const, text: b.text })),
      ...ctx.sources.mobyDick.map((m) => ({ doc: m.id, source: "moby_dick" as const, text: m.text })),
      ...ctx.sources.sotu.map((s) => ({ doc: s.id, source: "sotu" as const, text: s.text })),
    ];
    const clozes: Cloze[] = [];
    for (const t of texts) {
      const split = ctx.splitOfDoc(t.doc, t.source);
      if (split !== undefined) clozes.push(...clozesOf(t.doc, t.source, split, t.text));
    }
    const candidates: Candidate[] = [];
    for (const split of TASK_SPLITS) {
      const rng = ctx.rng(split);
      const inSplit = clozes.filter((c) => c.split === split);
      for (const source of ["brown", "moby_dick", "sotu"] as const) {
        const items = inSplit.filter((c) => c.source === source);
        const pool = [...new Set(items.map((c) => c.word))];
        for (const c of items) {
          const lastSentenceWords = c.context.slice(c.context.lastIndexOf(". ") + 1).toLowerCase().split(/\W+/);
          const distractors = sampleDistractors(rng, pool, c.word, 3, lastSentenceWords);
          if (distractors === undefined) continue;
          const placed = placeGold(rng, ` ${c.word}`, distractors.map((d) => ` ${d}`));
          candidates.push({ doc: c.doc, split, label: source, context: c.context, ...placed });
        }
      }
    }
    return candidates;
  },
};

/** The cloze targets of a text: each context (the cut sentence and those before it) and its cut word. */
export function clozeTargets(text: string): Array<{ context: string; word: string }> {
  return clozesOf("doc", "brown", "test", text).map(({ context, word }) => ({ context, word }));
}
