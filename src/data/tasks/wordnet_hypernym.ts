/**
 * `wordnet_hypernym`: name the more general kind of a held-out WordNet noun.
 * The context asks what the noun's first word is a kind of; the choices are
 * the first word of its (first) hypernym and the hypernyms of three other
 * held-out nouns of the same split, never one of the noun's own ancestors.
 *
 * @module
 */
import type { Synset } from "../sources/wordnet.ts";
import { placeGold, sampleDistractors } from "./passages.ts";
import { type Candidate, TASK_SPLITS, type TaskBuildContext, type TaskDefinition } from "./types.ts";

/** Every ancestor's first word along hypernym links (a cycle-safe walk). */
function ancestorWords(synset: Synset, byId: ReadonlyMap<string, Synset>): Set<string> {
  const seen = new Set<string>();
  const words = new Set<string>();
  const stack = [...synset.hypernyms];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const s = byId.get(id);
    if (s === undefined) continue;
    for (const lemma of s.lemmas) words.add(lemma);
    stack.push(...s.hypernyms);
  }
  return words;
}

/** The task definition. */
export const wordnetHypernym: TaskDefinition = {
  name: "wordnet_hypernym",
  description:
    'Given a held-out WordNet noun, choose the more general kind it belongs to (its hypernym), e.g. "dog" is a kind of "canine".',
  choices: 4,
  build(ctx: TaskBuildContext): Candidate[] {
    const byId = new Map(ctx.sources.wordnet.map((s) => [s.id, s]));
    const candidates: Candidate[] = [];
    for (const split of TASK_SPLITS) {
      const rng = ctx.rng(split);
      const items = ctx.sources.wordnet
        .filter((s) => s.pos === "noun" && s.hypernyms.length > 0 && ctx.splitOfDoc(s.id, "wordnet") === split)
        .map((s) => ({ synset: s, word: s.lemmas[0], kind: byId.get(s.hypernyms[0])?.lemmas[0] }))
        .filter((x): x is { synset: Synset; word: string; kind: string } =>
          x.kind !== undefined && x.kind.toLowerCase() !== x.word.toLowerCase()
        );
      const pool = [...new Set(items.map((x) => x.kind))];
      for (const { synset, word, kind } of items) {
        const distractors = sampleDistractors(rng, pool, kind, 3, [word, ...ancestorWords(synset, byId)]);
        if (distractors === undefined) continue;
        const placed = placeGold(rng, ` ${kind}`, distractors.map((d) => ` ${d}`));
        const context = `Question: "${word}" is a kind of what?\nAnswer:`;
        candidates.push({ doc: synset.id, split, label: "", context, ...placed });
      }
    }
    return candidates;
  },
};
