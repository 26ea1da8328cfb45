/**
 * Evaluation on several threads (docs/DISTRIBUTED.md "How tune and eval use
 * the cores") on fixtures/tiny and the fixture tasks: every item's
 * log-likelihoods, the perplexity and the whole report are the one-thread
 * ones, bit for bit, for 2 and 3 threads; progress still counts every
 * request; bad thread counts are refused before any work.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EVAL_DEFAULTS, evaluate, type EvalReport } from "../../mod.ts";
import { main } from "../../pipelines/eval.ts";
import { readTokenStream, tokenStreamBytes } from "../../src/data/token_stream.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import { scoreMultipleChoice } from "../../src/eval/multiple_choice.ts";
import { modelPerplexity } from "../../src/eval/perplexity.ts";
import { ScoringPool } from "../../src/eval/scoring_pool.ts";
import { readTaskItems } from "../../src/eval/task_file.ts";
import { tokenizerFor } from "../../src/io/tokenizer_for.ts";
import { openSource } from "../../src/model/model_source.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";

const TINY = fileURLToPath(new URL("../../fixtures/tiny", import.meta.url));
let model: ModelHandle;
let dir: string;

beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-eval-threads-"));
  await writeFile(join(dir, "valid.bin"), tokenStreamBytes(readTokenStream(EVAL_DEFAULTS.pplData).subarray(0, 1500)));
  model = await openSource(TINY, { split: { bottom: 0, top: 0 } });
});
afterAll(async () => {
  await model?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("scoring on a pool", () => {
  it("gives every item's log-likelihoods and the perplexity of one thread, bit for bit, on 2 and 3 threads", async () => {
    const { tokenizer } = await tokenizerFor(TINY, model.cfg, undefined, true);
    const items = [
      ...(await readTaskItems(EVAL_DEFAULTS.tasksDir, "wordnet_antonym", "test", 10)),
      ...(await readTaskItems(EVAL_DEFAULTS.tasksDir, "spam_detection", "test", 6)),
    ];
    const stream = readTokenStream(EVAL_DEFAULTS.pplData).subarray(0, 700);
    const options = { batchTokens: 300, padId: tokenizer.padId }; // a few rows per batch: many batches to share out
    const before = tf.memory().numTensors;
    const one = await scoreMultipleChoice(model, tokenizer, items, options);
    const onePpl = await modelPerplexity(model, stream, { ...options, ctx: 64 });
    expect(new Set(one.map((r) => r.pred)).size).toBeGreaterThan(1); // the scores are not degenerate
    for (const threads of [2, 3]) {
      const pool = await ScoringPool.start(model, threads);
      try {
        expect(pool.threads).toBe(threads);
        const events: StageEvent[] = [];
        const many = await scoreMultipleChoice(model, tokenizer, items, { ...options, pool, events: { next: (e) => void events.push(e) } });
        expect(many).toEqual(one);
        many.forEach((r, i) => r.logprobs.forEach((l, c) => expect(Object.is(l, one[i].logprobs[c])).toBe(true)));
        expect(await modelPerplexity(model, stream, { ...options, ctx: 64, pool })).toEqual(onePpl);
        // progress: one event per batch, counting up to every request
        const requests = items.reduce((n, item) => n + item.choices.length, 0);
        expect(events.length).toBeGreaterThan(threads);
        const done = events.map((e) => e.done ?? 0);
        expect(done).toEqual([...done].sort((a, b) => a - b));
        expect(events.at(-1)).toMatchObject({ done: requests, total: requests, unit: "requests" });
        await expect(scoreMultipleChoice(model, tokenizer, items, { ...options, pool, residency: "streaming" })).rejects.toThrow(
          "A scoring pool holds every block",
        );
      } finally {
        await pool.close();
      }
    }
    expect(tf.memory().numTensors).toBe(before);
    await expect(ScoringPool.start(model, 1)).rejects.toThrow("A scoring pool has at least 2 threads, got 1");
  });
});

describe("evaluate and offtune eval --workers", () => {
  const run = (workers: number) =>
    evaluate({
      model: TINY,
      tasks: ["lastword_cloze", "brown_genre"],
      limit: 12,
      batchTokens: 512,
      ppl: { ctx: 64, data: join(dir, "valid.bin") },
      quiet: true,
      workers,
    });
  const withoutTime = ({ seconds: _, ...rest }: EvalReport) => rest;

  it("writes the one-thread report on 2 threads", async () => {
    const one = await run(1);
    const two = await run(2);
    expect(withoutTime(two)).toEqual(withoutTime(one));
    expect(one.ppl!.tokens).toBeGreaterThan(0);
  });

  it("refuses a thread count that is not a positive integer, and several threads with streaming", async () => {
    await expect(evaluate({ model: TINY, workers: 0, quiet: true })).rejects.toThrow("Evaluation threads must be a positive integer, got 0");
    await expect(evaluate({ model: TINY, workers: 2, residency: "streaming", quiet: true })).rejects.toThrow("not with streaming residency");
    const spy = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      for (const bad of ["0", "1.5", "two", "-1"]) {
        await expect(main(["--model", TINY, `--workers=${bad}`])).rejects.toThrow(`--workers expects a positive integer, got "${bad}"`);
      }
      await expect(main(["--model", TINY, "--workers", "2", "--stream"])).rejects.toThrow("not with --stream");
    } finally {
      spy.mockRestore();
    }
  });
});
