/**
 * `wordnet_definition`: pick the definition of a held-out WordNet synset.
 * The context is the synset's dictionary headword exactly as the pretraining
 * corpus writes entries (`dog, domestic dog, Canis familiaris (noun):`); the
 * choices are its definition and the definitions of three other held-out
 * synsets of the same part of speech. The held-out entries never appear in
 * pretraining, but the format and the words do, so a pretrained model beats
 * chance (25%) without tuning.
 *
 * @module
 */
import { wordnetHeadword } from "../corpus.ts";
import { countWords } from "../text.ts";
import { placeGold, sampleDistractors } from "./passages.ts";
import { type Candidate, TASK_SPLITS, type TaskBuildContext, type TaskDefinition } from "./types.ts";

/** Definitions kept, in words. */
const MIN_WORDS = 3;
const MAX_WORDS = 25;

/** The task definition. */
export const wordnetDefinition: TaskDefinition = {
  name: "wordnet_definition",
  description:
    "Given a held-out WordNet dictionary headword (words and part of speech), choose its definition among four definitions of the same part of speech.",
  choices: 4,
  build(ctx: TaskBuildContext): Candidate[] {
    const candidates: Candidate[] = [];
    for (const split of TASK_SPLITS) {
      const rng = ctx.rng(split);
      const synsets = ctx.sources.wordnet.filter((s) => {
        const n = countWords(s.definition);
        return ctx.splitOfDoc(s.id, "wordnet") === split && n >= MIN_WORDS && n <= MAX_WORDS;
      });
      for (const pos of ["noun", "verb", "adjective", "adverb"] as const) {
        const items = synsets.filter((s) => s.pos === pos);
        const pool = items.map((s) => `${s.definition}.`);
        for (const s of items) {
          const gold = `${s.definition}.`;
          const distractors = sampleDistractors(rng, pool, gold, 3);
          if (distractors === undefined) continue;
          const placed = placeGold(rng, ` ${gold}`, distractors.map((d) => ` ${d}`));
          candidates.push({ doc: s.id, split, label: "", context: `${wordnetHeadword(s)}:`, ...placed });
        }
      }
    }
    return candidates;
  },
};
