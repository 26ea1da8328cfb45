/**
 * Reads an evaluation task split, `tasks/<task>/<split>.jsonl`
 * (fixtures/data/README.md "Evaluation tasks"), or a task file at any path
 * in the same format, into checked multiple-choice items for the scorer
 * (docs/METHOD.md §5) and the tuning verbs.
 *
 * @module
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseJsonlLines } from "../data/files.ts";
import { type McItem, TASK_SPLITS, type TaskSplit } from "../data/tasks/types.ts";

/** The checked item on line `line` of `file`; an item without `id` is named by its line number. */
function checkItem(record: unknown, file: string, line: number): McItem {
  const at = `Cannot read "${file}": line ${line}`;
  if (typeof record !== "object" || record === null || Array.isArray(record)) throw new Error(`${at} is not an object`);
  const r = record as Record<string, unknown>;
  let id: string;
  if (r.id === undefined) id = String(line);
  else if (typeof r.id === "number" && Number.isFinite(r.id)) id = String(r.id);
  else if (typeof r.id === "string") id = r.id;
  else throw new Error(`${at} has an "id" that is neither a string nor a number`);
  const where = r.id === undefined ? at : `${at} (${id})`;
  if (typeof r.context !== "string") throw new Error(`${where} has no string "context"`);
  if (!Array.isArray(r.choices) || r.choices.length < 2 || !r.choices.every((c) => typeof c === "string" && c !== "")) {
    throw new Error(`${where} needs "choices": at least 2 non-empty strings`);
  }
  if (!Number.isInteger(r.gold) || (r.gold as number) < 0 || (r.gold as number) >= r.choices.length) {
    throw new Error(`${where} has gold ${JSON.stringify(r.gold)} for ${r.choices.length} choices`);
  }
  return { id, context: r.context, choices: r.choices as string[], gold: r.gold as number, doc: String(r.doc ?? "") };
}

/** The checked items of `file`, the first `limit` when given; `what` names the file when it cannot be read. */
async function readItems(file: string, what: string, limit: number | undefined): Promise<McItem[]> {
  const text = await readFile(file, "utf8").catch((e) => {
    const reason = (e as { code?: string }).code === "ENOENT" ? "file does not exist" : (e as Error).message;
    throw new Error(`Cannot read ${what}: ${reason}`);
  });
  const items = parseJsonlLines(text, file).map((r) => checkItem(r.value, file, r.line));
  if (items.length === 0) throw new Error(`Task file "${file}" holds no items`);
  return limit === undefined ? items : items.slice(0, limit);
}

/**
 * The items of `<tasksDir>/<task>/<split>.jsonl`, the first `limit` when given.
 *
 * @throws Error naming the file for a missing file, a line that is not JSON
 *   or an item without context, ≥ 2 choices or a valid gold index (an item
 *   without `id` gets its line number)
 */
export async function readTaskItems(tasksDir: string, task: string, split: TaskSplit, limit?: number): Promise<McItem[]> {
  const file = join(tasksDir, task, `${split}.jsonl`);
  return await readItems(file, `task "${task}" split "${split}" from "${file}"`, limit);
}

/**
 * The items of a task file at any path (same line format as a task split,
 * e.g. a data owner's own `items.jsonl`), the first `limit` when given.
 *
 * @throws Error naming the file as {@link readTaskItems} does
 */
export async function readTaskFile(file: string, limit?: number): Promise<McItem[]> {
  return await readItems(file, `task file "${file}"`, limit);
}

/**
 * The tasks in `tasksDir`: its subdirectories holding at least one split file
 * (`train.jsonl`, `validation.jsonl` or `test.jsonl`), sorted by name. Any
 * such directory is a task, so a data owner's own tasks work on every verb.
 *
 * @throws Error naming the directory when it cannot be listed
 */
export async function listTasks(tasksDir: string): Promise<string[]> {
  const entries = await readdir(tasksDir, { withFileTypes: true }).catch((e) => {
    const reason = (e as { code?: string }).code === "ENOENT" ? "directory does not exist" : (e as Error).message;
    throw new Error(`Cannot list tasks in "${tasksDir}": ${reason}`);
  });
  const tasks: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const files = await readdir(join(tasksDir, entry.name)).catch(() => [] as string[]);
    if (TASK_SPLITS.some((split) => files.includes(`${split}.jsonl`))) tasks.push(entry.name);
  }
  return tasks.sort();
}
