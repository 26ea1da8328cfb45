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

/**
 * The input paths behind a task argument and a tasks directory, by flag
 * (`--task`, `--tasks-dir`), for the output check (src/io/output_dir.ts): the
 * task file, or the tasks directory a task name is looked up in.
 */
export function taskInputs(task: string, tasksDir: string = EVAL_DEFAULTS.tasksDir): Record<string, string> {
  return task.endsWith(".jsonl") ? { task } : { "tasks-dir": tasksDir };
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
