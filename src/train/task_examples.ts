/**
 * A task's training items for tuning (`offtune tune`, `offtune full-ft`):
 * where a task argument reads them from, its display name, and the padding
 * id a model's batches use. `goldExamples` (src/train/mc_batches.ts) turns
 * the items into the tuning examples.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import type { McItem } from "../data/tasks/types.ts";
import { EVAL_DEFAULTS } from "../eval/eval_report.ts";
import { readTaskFile, readTaskItems } from "../eval/task_file.ts";
import type { ModelConfig } from "../model/types.ts";

/**
 * The training items of a task: a task name reads `<tasksDir>/<name>/train.jsonl`
 * (default tasks directory: the fixtures'), a path ending in `.jsonl` reads
 * that file (same line format); the first `limit` only when given.
 */
export async function readTrainItems(task: string, limit?: number, tasksDir: string = EVAL_DEFAULTS.tasksDir): Promise<McItem[]> {
  return task.endsWith(".jsonl") ? await readTaskFile(task, limit) : await readTaskItems(tasksDir, task, "train", limit);
}

/** A task's display name: the name itself, or a file's directory and stem. */
export function taskName(task: string): string {
  return task.endsWith(".jsonl") ? `${basename(dirname(task))}/${basename(task, ".jsonl")}` : task;
}

/** The padding id to write into unread slots: config.json's `pad_token_id`, else 0. */
export function padIdOf(cfg: ModelConfig): number {
  const pad = cfg.raw.pad_token_id;
  return typeof pad === "number" && Number.isInteger(pad) && pad >= 0 && pad < cfg.vocabSize ? pad : 0;
}
