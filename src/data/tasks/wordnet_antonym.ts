/**
 * `wordnet_antonym`: name the opposite of a word, from WordNet's lexical
 * antonym pointers (`!`) of held-out synsets. The choices are the antonym and
 * three other words that have antonyms, of the same part of speech and split,
 * never an antonym of the asked word.
 *
 * @module
 */
import type { WordnetPos } from "../sources/wordnet.ts";
import { placeGold, sampleDistractors } from "./passages.ts";
import { type Candidate, TASK_SPLITS, type TaskBuildContext, type TaskDefinition, type TaskSplit } from "./types.ts";

/** The task definition. */
export const wordnetAntonym: TaskDefinition = {
  name: "wordnet_antonym",
  description: 'Given a word of a held-out WordNet synset, choose its antonym, e.g. the opposite of "hot" is "cold".',
  choices: 4,
  build(ctx: TaskBuildContext): Candidate[] {
    const byId = new Map(ctx.sources.wordnet.map((s) => [s.id, s]));
    const pairs: Array<{ doc: string; split: TaskSplit; pos: WordnetPos; word: string; antonym: string }> = [];
    for (const s of ctx.sources.wordnet) {
      const split = ctx.splitOfDoc(s.id, "wordnet");
      if (split === undefined) continue;
      for (const link of s.antonyms) {
        const word = s.lemmas[link.source];
        const antonym = byId.get(link.target)?.lemmas[link.targetWord];
        if (word === undefined || antonym === undefined) {
          throw new Error(`WordNet antonym pointer of ${s.id} names a missing word (${link.target})`);
        }
        pairs.push({ doc: s.id, split, pos: s.pos, word, antonym });
      }
    }
    const antonymsOf = new Map<string, string[]>();
    for (const p of pairs) antonymsOf.set(p.word, [...(antonymsOf.get(p.word) ?? []), p.antonym]);
    const candidates: Candidate[] = [];
    const seen = new Set<string>();
    for (const split of TASK_SPLITS) {
      const rng = ctx.rng(split);
      const items = pairs.filter((p) => p.split === split);
      for (const pos of ["noun", "verb", "adjective", "adverb"] as const) {
        const ofPos = items.filter((p) => p.pos === pos);
        const pool = [...new Set(ofPos.flatMap((p) => [p.word, p.antonym]))];
        for (const p of ofPos) {
          if (seen.has(`${p.word}|${p.antonym}`)) continue;
          seen.add(`${p.word}|${p.antonym}`);
          const distractors = sampleDistractors(rng, pool, p.antonym, 3, [p.word, ...(antonymsOf.get(p.word) ?? [])]);
          if (distractors === undefined) continue;
          const placed = placeGold(rng, ` ${p.antonym}`, distractors.map((d) => ` ${d}`));
          const context = `Question: What is the opposite of "${p.word}"?\nAnswer:`;
          candidates.push({ doc: p.doc, split, label: "", context, ...placed });
        }
      }
    }
    return candidates;
  },
};
