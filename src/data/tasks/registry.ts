/**
 * The eight evaluation tasks, in report order (the GradOT table evaluates on
 * eight zero-shot multiple-choice tasks, docs/METHOD.md §1 and §5).
 *
 * @module
 */
import { brownGenre } from "./brown_genre.ts";
import { kjvVerseEnding } from "./kjv_verse_ending.ts";
import { lastwordCloze } from "./lastword_cloze.ts";
import { sotuEra } from "./sotu_era.ts";
import { spamDetection } from "./spam_detection.ts";
import type { TaskDefinition } from "./types.ts";
import { wordnetAntonym } from "./wordnet_antonym.ts";
import { wordnetDefinition } from "./wordnet_definition.ts";
import { wordnetHypernym } from "./wordnet_hypernym.ts";

/** All tasks; each writes `fixtures/data/tasks/<name>/{train,validation,test}.jsonl`. */
export const TASKS: readonly TaskDefinition[] = [
  lastwordCloze,
  kjvVerseEnding,
  wordnetDefinition,
  wordnetHypernym,
  wordnetAntonym,
  spamDetection,
  sotuEra,
  brownGenre,
];
