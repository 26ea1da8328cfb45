/**
 * Checks the committed fixtures: the tokenizer, the token streams and the
 * eight task files (schema, sizes, balance, token budget).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parseJsonl } from "../../src/data/files.ts";
import { MAX_ITEM_TOKENS, SPLIT_SIZES } from "../../src/data/tasks/assemble.ts";
import { TASKS } from "../../src/data/tasks/registry.ts";
import { type McItem, TASK_SPLITS } from "../../src/data/tasks/types.ts";
import { readTokenStream } from "../../src/data/token_stream.ts";
import { loadTokenizer, type Tokenizer } from "../../src/io/tokenizer.ts";

const ROOT = fileURLToPath(new URL("../../fixtures", import.meta.url));
const manifest = JSON.parse(readFileSync(join(ROOT, "data/manifest.json"), "utf8")) as {
  tokenizer: { vocabSize: number };
  text: Record<string, { tokens: number }>;
  tasks: Record<string, { items: Record<string, number> }>;
  files: Record<string, { bytes: number; sha256: string }>;
};

/**
 * Fixture files rebuilt by pipelines/build_fixtures.ts and not committed: the
 * plain names in fixtures/data/pretrain/.gitignore, read from it so that a
 * fresh clone, which lacks them, never fails when that list grows.
 */
const GITIGNORED = readFileSync(join(ROOT, "data/pretrain/.gitignore"), "utf8")
  .split("\n")
  .map((line) => line.trim())
  .filter((line) => line !== "" && !line.startsWith("#") && !/[*?[]/.test(line))
  .map((f) => `data/pretrain/${f}`);

let tokenizer: Tokenizer;
beforeAll(async () => {
  tokenizer = await loadTokenizer(join(ROOT, "tokenizer/tokenizer.json"));
});

function readTask(name: string, split: string): McItem[] {
  const file = join(ROOT, "data/tasks", name, `${split}.jsonl`);
  return parseJsonl(readFileSync(file, "utf8"), file) as McItem[];
}

describe("tokenizer fixture", () => {
  const json = JSON.parse(readFileSync(join(ROOT, "tokenizer/tokenizer.json"), "utf8")) as {
    model: { vocab: Record<string, number>; merges: string[] };
    added_tokens: Array<{ id: number; content: string }>;
  };

  it("has dense ids 0..V-1, OPT's specials first, and every merge's result in the vocabulary", () => {
    const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
    expect(ids.length).toBe(manifest.tokenizer.vocabSize);
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i));
    expect(json.added_tokens.map((t) => [t.id, t.content])).toEqual([[0, "<s>"], [1, "<pad>"], [2, "</s>"], [3, "<unk>"]]);
    for (const merge of json.model.merges) {
      const [a, b] = merge.split(" ");
      expect(json.model.vocab[a]).toBeDefined();
      expect(json.model.vocab[b]).toBeDefined();
      expect(json.model.vocab[a + b]).toBeDefined();
    }
  });

  it("round-trips text through the project loader, with OPT's leading </s>", () => {
    expect(tokenizer.vocabSize).toBe(manifest.tokenizer.vocabSize);
    expect(tokenizer.bosId).toBe(2);
    const samples = [
      ...TASKS.map((t) => readTask(t.name, "validation")[0].context),
      "Ünïcode — “quotes” 😀 and\ttabs\n\nand  double  spaces",
    ];
    for (const text of samples) {
      const ids = tokenizer.encode(text);
      expect(ids[0]).toBe(2);
      expect(tokenizer.decode(ids.slice(1))).toBe(text);
    }
    // Common words of the corpus are single tokens.
    for (const word of [" the", " and", " of", " LORD", " government"]) expect(tokenizer.encode(word, { addSpecialTokens: false })).toHaveLength(1);
  });
});

describe("token streams", () => {
  for (const split of ["valid", "calibration"]) {
    it(`${split}.bin holds ids below V, starts with </s>, and matches the manifest`, () => {
      const file = join(ROOT, `data/pretrain/${split}.bin`);
      const stream = readTokenStream(file);
      expect(stream.length).toBe(manifest.text[split].tokens);
      expect(stream[0]).toBe(2);
      expect(stream.reduce((m, id) => Math.max(m, id), 0)).toBeLessThan(manifest.tokenizer.vocabSize);
      const digest = createHash("sha256").update(readFileSync(file)).digest("hex");
      expect(digest).toBe(manifest.files[`data/pretrain/${split}.bin`].sha256);
    });
  }
});

describe("task files", () => {
  it("lists eight tasks", () => {
    expect(TASKS.map((t) => t.name)).toHaveLength(8);
    expect(Object.keys(manifest.tasks)).toEqual(TASKS.map((t) => t.name));
  });

  for (const task of TASKS) {
    describe(task.name, () => {
      const splits = Object.fromEntries(TASK_SPLITS.map((s) => [s, readTask(task.name, s)]));

      it("has valid items: schema, gold in range, distinct choices, unique ids", () => {
        const ids = new Set<string>();
        for (const split of TASK_SPLITS) {
          expect(splits[split].length).toBe(manifest.tasks[task.name].items[split]);
          for (const item of splits[split]) {
            expect(Object.keys(item).sort()).toEqual(["choices", "context", "doc", "gold", "id"]);
            expect(typeof item.context).toBe("string");
            expect(item.context.trim().length).toBeGreaterThan(0);
            expect(item.choices).toHaveLength(task.choices);
            for (const c of item.choices) expect(c).toMatch(/^ \S/);
            expect(new Set(item.choices.map((c) => c.trim().toLowerCase())).size).toBe(task.choices);
            expect(Number.isInteger(item.gold) && item.gold >= 0 && item.gold < task.choices).toBe(true);
            expect(ids.has(item.id)).toBe(false);
            ids.add(item.id);
          }
        }
      });

      it("has at least 500 test items and sizes within the caps", () => {
        expect(splits.test.length).toBeGreaterThanOrEqual(500);
        for (const split of TASK_SPLITS) expect(splits[split].length).toBeLessThanOrEqual(SPLIT_SIZES[split]);
        expect(splits.validation.length).toBeGreaterThan(0);
        expect(splits.train.length).toBeGreaterThan(0);
      });

      it("keeps each source document in one split", () => {
        const owner = new Map<string, string>();
        for (const split of TASK_SPLITS) {
          for (const item of splits[split]) {
            expect(owner.get(item.doc) ?? split).toBe(split);
            owner.set(item.doc, split);
          }
        }
      });

      it(`fits every context plus choice in ${MAX_ITEM_TOKENS} tokens`, () => {
        for (const item of splits.test) {
          for (const c of item.choices) expect(tokenizer.encode(item.context + c).length).toBeLessThanOrEqual(MAX_ITEM_TOKENS);
        }
      });

      it(task.balanced ? "has exactly balanced classes" : "spreads the gold over all positions", () => {
        for (const split of TASK_SPLITS) {
          const counts = new Array<number>(task.choices).fill(0);
          for (const item of splits[split]) counts[item.gold]++;
          if (task.balanced) expect(new Set(counts).size).toBe(1);
          else if (split === "test") for (const c of counts) expect(c / splits.test.length).toBeGreaterThan(0.15);
        }
      });
    });
  }

  it("matches the manifest's checksums", () => {
    for (const [file, { sha256 }] of Object.entries(manifest.files)) {
      const path = join(ROOT, file);
      if (GITIGNORED.includes(file) && !existsSync(path)) continue;
      expect(createHash("sha256").update(readFileSync(path)).digest("hex"), file).toBe(sha256);
    }
  });
});
