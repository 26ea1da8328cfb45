/**
 * `sotu_era`: in which period was a passage of a held-out State of the Union
 * address given? Four periods of about half a century; passages are runs of
 * whole sentences (25-45 words). `assemble.ts` balances the periods, so
 * chance is 25%.
 *
 * @module
 */
import { sentenceWindows } from "./passages.ts";
import { stratifiedTaskSplits } from "./assemble.ts";
import type { Candidate, TaskBuildContext, TaskDefinition } from "./types.ts";

/** The periods: first year of each, and the choice text. */
export const SOTU_ERAS: ReadonlyArray<{ from: number; choice: string }> = [
  { from: 1790, choice: " 1790 to 1849" },
  { from: 1850, choice: " 1850 to 1899" },
  { from: 1900, choice: " 1900 to 1949" },
  { from: 1950, choice: " 1950 to 2021" },
];

/** Index of the period holding `year`. */
export function eraOf(year: number): number {
  if (year < SOTU_ERAS[0].from) throw new Error(`Year ${year} is before the first State of the Union (1790)`);
  let era = 0;
  while (era + 1 < SOTU_ERAS.length && year >= SOTU_ERAS[era + 1].from) era++;
  return era;
}

/** The task definition. */
export const sotuEra: TaskDefinition = {
  name: "sotu_era",
  description:
    "In which period (1790-1849, 1850-1899, 1900-1949, 1950-2021) was a passage of a held-out State of the Union address given?",
  choices: SOTU_ERAS.length,
  balanced: true,
  build(ctx: TaskBuildContext): Candidate[] {
    const speeches = ctx.sources.sotu.filter((s) => ctx.heldOut(s.id, "sotu"));
    const splits = stratifiedTaskSplits(speeches.map((s) => ({ id: s.id, label: String(eraOf(s.year)) })));
    const candidates: Candidate[] = [];
    for (const speech of speeches) {
      const split = splits.get(speech.id)!;
      const era = eraOf(speech.year);
      for (const passage of sentenceWindows(speech.text, 25, 45)) {
        candidates.push({
          doc: speech.id,
          split,
          label: String(era),
          context: `${passage}\n\nQuestion: In which years was this State of the Union address given?\nAnswer:`,
          choices: SOTU_ERAS.map((e) => e.choice),
          gold: era,
        });
      }
    }
    return candidates;
  },
};
