/**
 * Turns a builder's candidates into the three task files: assigns held-out
 * documents to task splits, drops candidates that are too long for a small
 * model, overlap the pretraining text, or repeat a context, then samples
 * each split to its size (class-balanced where the task asks) and numbers
 * the items.
 *
 * @module
 */
import { createRng, unitHash } from "../random.ts";
import { type Candidate, type McItem, TASK_SPLITS, type TaskDefinition, type TaskSplit } from "./types.ts";

/** Seed of the hash that sends a held-out document to a task split. */
export const TASK_SPLIT_SEED = 31;

/** Fractions of held-out documents per task split (test first: it needs 500 items after balancing). */
export const TASK_SPLIT_FRACTIONS: Readonly<Record<TaskSplit, number>> = { test: 0.5, validation: 0.1, train: 0.4 };

/** Items kept per split (the files are committed, so they stay small). */
export const SPLIT_SIZES: Readonly<Record<TaskSplit, number>> = { train: 400, validation: 100, test: 500 };

/** Longest `</s> + context + choice`, in tokens of the project tokenizer, for every choice. */
export const MAX_ITEM_TOKENS = 128;

/** The task split of a held-out document (every task uses the same assignment). */
export function taskSplitOf(docId: string): TaskSplit {
  const u = unitHash(docId, TASK_SPLIT_SEED);
  if (u < TASK_SPLIT_FRACTIONS.test) return "test";
  if (u < TASK_SPLIT_FRACTIONS.test + TASK_SPLIT_FRACTIONS.validation) return "validation";
  return "train";
}

/**
 * Task splits for held-out documents that carry a class: within each class
 * the documents are ordered by hash, the first half (rounded up, leaving
 * train at least one) go to test, the next tenth (at least one) to
 * validation and the rest to train, so every class with three or more
 * documents reaches every split (the SOTU
 * periods have about 14 held-out addresses each).
 */
export function stratifiedTaskSplits(docs: ReadonlyArray<{ id: string; label: string }>): Map<string, TaskSplit> {
  const out = new Map<string, TaskSplit>();
  for (const label of new Set(docs.map((d) => d.label))) {
    const ids = [...new Set(docs.filter((d) => d.label === label).map((d) => d.id))]
      .sort((a, b) => unitHash(a, TASK_SPLIT_SEED) - unitHash(b, TASK_SPLIT_SEED));
    const validation = Math.max(1, Math.round(ids.length * TASK_SPLIT_FRACTIONS.validation));
    // Half (rounded up) to test, but leave train at least one document.
    const test = Math.min(Math.ceil(ids.length * TASK_SPLIT_FRACTIONS.test), Math.max(0, ids.length - validation - 1));
    ids.forEach((id, i) => out.set(id, i < test ? "test" : i < test + validation ? "validation" : "train"));
  }
  return out;
}

/** The checks `assembleTask` applies, supplied by the caller (tokenizer and pretraining n-gram index). */
export interface AssembleChecks {
  /** Tokens of a text with the tokenizer's special tokens (OPT: a leading `</s>`). */
  countTokens(text: string): number;
  /** Whether a text shares a 13-word n-gram with pretraining, validation or calibration text. */
  contaminated(text: string): boolean;
}

/** The three splits of a task and how many candidates each filter dropped. */
export interface AssembledTask {
  splits: Record<TaskSplit, McItem[]>;
  candidates: number;
  dropped: { tooLong: number; contaminated: number; duplicate: number };
}

/** Checks a candidate's shape; a failure is a builder bug, so it throws. */
function checkCandidate(task: TaskDefinition, c: Candidate): void {
  const distinct = new Set(c.choices.map((x) => x.trim().toLowerCase()));
  if (c.choices.length !== task.choices || distinct.size !== c.choices.length) {
    throw new Error(`Task ${task.name}: candidate from ${c.doc} has choices ${JSON.stringify(c.choices)}`);
  }
  if (!Number.isInteger(c.gold) || c.gold < 0 || c.gold >= c.choices.length) {
    throw new Error(`Task ${task.name}: candidate from ${c.doc} has gold ${c.gold}`);
  }
}

/** Samples up to `size` candidates, stratified by label (strictly equal per label when `balanced`). */
function sample(candidates: Candidate[], size: number, labels: readonly string[], balanced: boolean, seed: string) {
  const rng = createRng(seed);
  const byLabel = new Map(labels.map((l) => [l, rng.shuffle(candidates.filter((c) => c.label === l))]));
  const smallest = Math.min(...[...byLabel.values()].map((g) => g.length));
  const quota = balanced ? Math.min(Math.floor(size / labels.length), smallest) : Math.floor(size / labels.length);
  const chosen: Candidate[] = [];
  const rest: Candidate[] = [];
  for (const group of byLabel.values()) {
    chosen.push(...group.slice(0, quota));
    rest.push(...group.slice(quota));
  }
  if (!balanced) chosen.push(...rng.shuffle(rest).slice(0, size - chosen.length));
  return rng.shuffle(chosen);
}

/** Filters, splits, samples and numbers a task's candidates. */
export function assembleTask(task: TaskDefinition, candidates: Candidate[], checks: AssembleChecks): AssembledTask {
  const dropped = { tooLong: 0, contaminated: 0, duplicate: 0 };
  const order: Record<TaskSplit, number> = { test: 0, validation: 1, train: 2 };
  const sorted = candidates.map((c, i) => ({ c, i })).sort((x, y) => order[x.c.split] - order[y.c.split] || x.i - y.i);
  const seen = new Set<string>();
  const kept: Candidate[] = [];
  for (const { c } of sorted) {
    checkCandidate(task, c);
    if (seen.has(c.context)) {
      dropped.duplicate++;
      continue;
    }
    seen.add(c.context);
    if (c.choices.some((choice) => checks.countTokens(c.context + choice) > MAX_ITEM_TOKENS)) {
      dropped.tooLong++;
      continue;
    }
    if (checks.contaminated(`${c.context} ${c.choices[c.gold]}`)) {
      dropped.contaminated++;
      continue;
    }
    kept.push(c);
  }
  const labels = [...new Set(kept.map((c) => c.label))].sort();
  const splits = {} as Record<TaskSplit, McItem[]>;
  for (const split of TASK_SPLITS) {
    const chosen = sample(kept.filter((c) => c.split === split), SPLIT_SIZES[split], labels, task.balanced ?? false, `${task.name}/${split}/sample`);
    splits[split] = chosen.map((c, i) => ({
      id: `${task.name}-${split}-${String(i).padStart(4, "0")}`,
      context: c.context,
      choices: c.choices,
      gold: c.gold,
      doc: c.doc,
    }));
  }
  return { splits, candidates: candidates.length, dropped };
}
