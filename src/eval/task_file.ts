/**
 * Reads an evaluation task split, `tasks/<task>/<split>.jsonl`
 * (fixtures/data/README.md "Evaluation tasks"), or a task file at any path
 * in the same format, into checked multiple-choice items for the scorer
 * (docs/METHOD.md §5) and the tuning verbs.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseJsonl } from "../data/files.ts";
import type { McItem, TaskSplit } from "../data/tasks/types.ts";

/** The checked item on line `line` of `file`. */
function checkItem(record: unknown, file: string, line: number): McItem {
  const where = `Cannot read "${file}": line ${line}`;
  if (typeof record !== "object" || record === null || Array.isArray(record)) throw new Error(`${where} is not an object`);
  const r = record as Record<string, unknown>;
  if (typeof r.id !== "string") throw new Error(`${where} has no string "id"`);
  if (typeof r.context !== "string") throw new Error(`${where} (${r.id}) has no string "context"`);
  if (!Array.isArray(r.choices) || r.choices.length < 2 || !r.choices.every((c) => typeof c === "string" && c !== "")) {
    throw new Error(`${where} (${r.id}) needs "choices": at least 2 non-empty strings`);
  }
  if (!Number.isInteger(r.gold) || (r.gold as number) < 0 || (r.gold as number) >= r.choices.length) {
    throw new Error(`${where} (${r.id}) has gold ${JSON.stringify(r.gold)} for ${r.choices.length} choices`);
  }
  return { id: r.id, context: r.context, choices: r.choices as string[], gold: r.gold as number, doc: String(r.doc ?? "") };
}

/** The checked items of `file`, the first `limit` when given; `what` names the file when it cannot be read. */
async function readItems(file: string, what: string, limit: number | undefined): Promise<McItem[]> {
  const text = await readFile(file, "utf8").catch((e) => {
    const reason = (e as { code?: string }).code === "ENOENT" ? "file does not exist" : (e as Error).message;
    throw new Error(`Cannot read ${what}: ${reason}`);
  });
  const records = parseJsonl(text, file);
  const items = records.map((r, i) => checkItem(r, file, i + 1));
  if (items.length === 0) throw new Error(`Task file "${file}" holds no items`);
  return limit === undefined ? items : items.slice(0, limit);
}

/**
 * The items of `<tasksDir>/<task>/<split>.jsonl`, the first `limit` when given.
 *
 * @throws Error naming the file for a missing file, a line that is not JSON
 *   or an item without id, context, ≥ 2 choices or a valid gold index
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
