/**
 * The document-level split of the corpus: each document goes, by a seeded
 * hash of its id alone, to pretraining `train`, pretraining `valid`,
 * `calibration` (the text GradOT's calibration pass reads, docs/METHOD.md §2) or
 * `holdout` (the only documents evaluation tasks are built from, so no task
 * item's text is ever pretrained on). Hashing the id, not the position, keeps
 * every document's split stable when sources change.
 *
 * @module
 */
import { unitHash } from "./random.ts";

/** The four splits. */
export type SplitName = "train" | "valid" | "calibration" | "holdout";

/** The corpus sources. */
export type SourceName = "sotu" | "moby_dick" | "brown" | "kjv" | "wordnet" | "spam";

/** Fractions of a source's documents sent to each non-train split (train gets the rest). */
export interface SplitFractions {
  valid: number;
  calibration: number;
  holdout: number;
}

/** Seed of the split hash. Changing it reshuffles every split. */
export const SPLIT_SEED = 20250;

/**
 * Per-source fractions. Holdout is larger where a task needs many held-out
 * documents to reach 500 test items with class balance (SOTU speeches, Brown
 * samples, WordNet antonym pairs, emails) and small for the long KJV and
 * Moby-Dick, whose tasks need few documents.
 */
export const SPLIT_FRACTIONS: Readonly<Record<SourceName, SplitFractions>> = {
  sotu: { valid: 0.01, calibration: 0.01, holdout: 0.25 },
  moby_dick: { valid: 0.03, calibration: 0.02, holdout: 0.15 },
  brown: { valid: 0.01, calibration: 0.01, holdout: 0.25 },
  kjv: { valid: 0.01, calibration: 0.01, holdout: 0.12 },
  wordnet: { valid: 0.01, calibration: 0.01, holdout: 0.3 },
  spam: { valid: 0.01, calibration: 0.01, holdout: 0.55 },
};

/** The split of a document, from its id and source. */
export function splitOf(id: string, source: SourceName): SplitName {
  const f = SPLIT_FRACTIONS[source];
  const u = unitHash(id, SPLIT_SEED);
  if (u < f.holdout) return "holdout";
  if (u < f.holdout + f.valid) return "valid";
  if (u < f.holdout + f.valid + f.calibration) return "calibration";
  return "train";
}
