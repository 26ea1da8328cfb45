/**
 * Types shared by the evaluation-task builders: the lm-eval-harness style
 * multiple-choice item written to the fixtures, and the candidate items a
 * builder proposes before filtering, balancing and capping
 * (`assemble.ts`).
 *
 * @module
 */
import type { Sources } from "../corpus.ts";
import type { Rng } from "../random.ts";
import type { SourceName } from "../split.ts";

/** The task splits (lm-eval-harness names). */
export type TaskSplit = "train" | "validation" | "test";

/** All task splits, in file order. */
export const TASK_SPLITS: readonly TaskSplit[] = ["train", "validation", "test"];

/**
 * One multiple-choice item, one JSONL line: the model scores each choice as
 * a continuation of `context` (log-likelihood, docs/METHOD.md §5); `gold` indexes
 * the right one. Choices start with a space, so `context + choice` is the
 * natural text. `doc` names the held-out source document it came from.
 */
export interface McItem {
  /** The item's id (its line number when the file gives none). */
  id: string;
  /** The text each choice continues. */
  context: string;
  /** The candidate continuations, each starting with a space. */
  choices: string[];
  /** Index of the right choice. */
  gold: number;
  /** The held-out source document the item came from. */
  doc: string;
}

/** An item a builder proposes, with the class it belongs to (for balancing) and its task split. */
export interface Candidate {
  doc: string;
  split: TaskSplit;
  /** Class for balanced sampling (the gold label, or the source for mixed tasks); "" for none. */
  label: string;
  context: string;
  choices: string[];
  gold: number;
}

/** What a builder gets: the sources, the task split of held-out documents, and seeded randomness. */
export interface TaskBuildContext {
  sources: Sources;
  /** Whether a document is in the corpus's task-holdout split (the only documents tasks may use). */
  heldOut(docId: string, source: SourceName): boolean;
  /** The task split of a held-out document (by hash), or `undefined` when the document is not held out. */
  splitOfDoc(docId: string, source: SourceName): TaskSplit | undefined;
  /** A generator seeded by task and split, so each split's sampling is reproducible on its own. */
  rng(split: TaskSplit): Rng;
}

/** A task: its name (directory), a description for the README, and its builder. */
export interface TaskDefinition {
  name: string;
  description: string;
  /** Number of choices per item (chance accuracy is 1 / choices). */
  choices: number;
  /**
   * Whether every split keeps exactly as many items of each class (`label`)
   * as the rarest class has, so chance is 1 / choices for a classifier that
   * guesses a constant class too. Otherwise labels only stratify the sample.
   */
  balanced?: boolean;
  build(context: TaskBuildContext): Candidate[];
}
