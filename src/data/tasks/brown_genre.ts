/**
 * `brown_genre`: what kind of text is a passage of a held-out Brown Corpus
 * sample? The 15 Brown categories are grouped into the corpus's own four
 * broad classes: press (A-C), general prose (D-G), learned and government
 * writing (H, J), and fiction (K-R). Passages are runs of whole sentences
 * (25-45 words); `assemble.ts` balances the classes, so chance is 25%.
 *
 * @module
 */
import { sentenceWindows } from "./passages.ts";
import { stratifiedTaskSplits } from "./assemble.ts";
import type { Candidate, TaskBuildContext, TaskDefinition } from "./types.ts";

/** The four classes: choice text and the Brown categories in each. */
export const BROWN_CLASSES: ReadonlyArray<{ choice: string; genres: readonly string[] }> = [
  { choice: " a newspaper", genres: ["news", "editorial", "reviews"] },
  { choice: " a general interest book or magazine", genres: ["religion", "hobbies", "lore", "belles_lettres"] },
  { choice: " a scientific or government report", genres: ["government", "learned"] },
  {
    choice: " a novel or story",
    genres: ["fiction", "mystery", "science_fiction", "adventure", "romance", "humor"],
  },
];

/** Index of the class holding a Brown category. */
export function brownClassOf(genre: string): number {
  const index = BROWN_CLASSES.findIndex((c) => c.genres.includes(genre));
  if (index < 0) throw new Error(`Unknown Brown category "${genre}"`);
  return index;
}

/** The task definition. */
export const brownGenre: TaskDefinition = {
  name: "brown_genre",
  description:
    "Where does a passage of a held-out Brown Corpus sample come from: a newspaper, a general interest book or magazine, a scientific or government report, or a novel or story?",
  choices: BROWN_CLASSES.length,
  balanced: true,
  build(ctx: TaskBuildContext): Candidate[] {
    const samples = ctx.sources.brown.filter((b) => ctx.heldOut(b.id, "brown"));
    const splits = stratifiedTaskSplits(samples.map((b) => ({ id: b.id, label: String(brownClassOf(b.genre)) })));
    const candidates: Candidate[] = [];
    for (const sample of samples) {
      const split = splits.get(sample.id)!;
      const cls = brownClassOf(sample.genre);
      for (const passage of sentenceWindows(sample.text, 25, 45)) {
        candidates.push({
          doc: sample.id,
          split,
          label: String(cls),
          context: `${passage}\n\nQuestion: Where is this text from?\nAnswer: From`,
          choices: BROWN_CLASSES.map((c) => c.choice),
          gold: cls,
        });
      }
    }
    return candidates;
  },
};
