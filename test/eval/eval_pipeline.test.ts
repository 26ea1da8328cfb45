/**
 * `offtune eval` end to end on a tiny random OPT written to a temp dir
 * (vocabulary of the fixture tokenizer, which it falls back to): flags,
 * the JSON report's stable keys and internal consistency, the table, the
 * task file reader and the errors a user meets.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EVAL_DEFAULTS, type EvalReport, selectTasks } from "../../mod.ts";
import { main } from "../../pipelines/eval.ts";
import { readTokenStream, tokenStreamBytes } from "../../src/data/token_stream.ts";
import { unigramPerplexity } from "../../src/eval/perplexity.ts";
import { wilsonInterval } from "../../src/eval/stats.ts";
import { listTasks, readTaskFile, readTaskItems } from "../../src/eval/task_file.ts";
import { saveCheckpoint } from "../../src/io/checkpoint.ts";
import { toHfTensors } from "../../src/model/load.ts";
import { opt } from "../../src/model/opt.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openSource } from "../../src/model/model_source.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { writeAdapterPackage } from "../../src/train/tune_package.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { fixtureDir } from "../model/golden.ts";

let dir: string;
const config = optConfigJson({
  layers: 3, hidden: 16, heads: 2, ffn: 32, maxPositions: 128, vocabSize: 6016, bosId: 2, eosId: 2, padId: 1,
});
const cfg = opt.parseConfig(config);

function randomWeights(shapes: Map<string, number[]>, seed: number): WeightMap {
  return new Map([...shapes].map(([name, shape], i) => [name, tf.randomNormal(shape, 0, 0.05, "float32", seed + i)]));
}

/** Saves a checkpoint of the given outer and block weights (disposing them). */
async function saveModel(path: string, outer: WeightMap, blocks: WeightMap[]): Promise<void> {
  await saveCheckpoint(path, config, [...toHfTensors(opt, cfg, "outer", outer), ...blocks.flatMap((w, i) => toHfTensors(opt, cfg, i, w))]);
  tf.dispose([...outer.values(), ...blocks.flatMap((w) => [...w.values()])]);
}

/**
 * Bytes that `ids` decode to under the fixture tokenizer, counted from its
 * vocabulary strings through GPT-2's byte-to-character table (printable
 * Latin-1 bytes stand for themselves, the other bytes for U+0100 onwards);
 * special tokens count no bytes.
 */
async function byteLevelLength(ids: number[]): Promise<number> {
  const json = JSON.parse(await readFile(fileURLToPath(new URL("../../fixtures/tokenizer/tokenizer.json", import.meta.url)), "utf8")) as {
    model: { vocab: Record<string, number> };
    added_tokens: { id: number }[];
  };
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const byteOf = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) byteOf.set(String.fromCodePoint(printable(b) ? b : next++), b);
  const lengths = new Map(Object.entries(json.model.vocab).map(([token, id]) => [id, [...token].filter((c) => byteOf.has(c)).length]));
  const specials = new Set(json.added_tokens.map((t) => t.id));
  return ids.reduce((sum, id) => sum + (specials.has(id) ? 0 : lengths.get(id)!), 0);
}

beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-eval-"));
  await saveModel(join(dir, "model"), randomWeights(opt.outerShapes(cfg), 1), [100, 200, 300].map((s) => randomWeights(opt.blockShapes(cfg), s)));
  const valid = readTokenStream(EVAL_DEFAULTS.pplData);
  await writeFile(join(dir, "valid.bin"), tokenStreamBytes(valid.subarray(0, 300)));
  await writeFile(join(dir, "train.bin"), tokenStreamBytes(valid.subarray(300, 2300)));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the verb, returning its exit code and what it printed to stdout. */
async function run(argv: string[]): Promise<{ code: number; stdout: string }> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.join(" ")));
  try {
    return { code: await main(argv), stdout: lines.join("\n") };
  } finally {
    spy.mockRestore();
  }
}

describe("offtune eval", () => {
  it("scores the chosen tasks, prints the table and writes a consistent JSON report", async () => {
    const json = join(dir, "out", "report.json");
    const before = tf.memory().numTensors;
    const { code, stdout } = await run([
      "--model", join(dir, "model"), "--tasks", "spam_detection, wordnet_antonym", "--limit", "6", "--quiet",
      "--ppl", "--ppl-data", join(dir, "valid.bin"), "--ppl-train", join(dir, "train.bin"), "--json", json,
    ]);
    expect(code).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    const report = JSON.parse(await readFile(json, "utf8")) as EvalReport;
    expect(Object.keys(report)).toEqual(["model", "adapter", "split", "limit", "bos", "backend", "seconds", "tasks", "average", "ppl"]);
    expect(report.adapter).toBeNull();
    expect(report.split).toBe("test");
    expect(Object.keys(report.tasks)).toEqual(["wordnet_antonym", "spam_detection"]); // report order
    for (const [name, t] of Object.entries(report.tasks)) {
      expect(Object.keys(t)).toEqual([
        "n", "acc", "acc_stderr", "acc_ci", "acc_norm", "acc_norm_stderr", "acc_norm_ci", "chance",
        "acc_above_chance", "acc_norm_above_chance",
      ]);
      expect(t.n).toBe(6);
      expect(t.chance).toBe(name === "spam_detection" ? 0.5 : 0.25);
      expect(t.acc_ci).toEqual(wilsonInterval(Math.round(t.acc * 6), 6));
      expect(t.acc_norm_ci).toEqual(wilsonInterval(Math.round(t.acc_norm * 6), 6));
      expect(stdout).toContain(name);
    }
    const tasks = Object.values(report.tasks);
    expect(report.average!.tasks).toBe(2);
    expect(report.average!.acc).toBeCloseTo((tasks[0].acc + tasks[1].acc) / 2, 12);
    expect(report.average!.chance).toBeCloseTo(0.375, 12);
    expect(stdout).toContain("average");

    const p = report.ppl!;
    expect(p.tokens).toBe(299);
    expect(p.ctx).toBe(128);
    expect(p.ppl).toBeCloseTo(Math.exp(p.nll), 6);
    const stream = readTokenStream(join(dir, "valid.bin"));
    const unigram = unigramPerplexity(readTokenStream(join(dir, "train.bin")), stream, 6016);
    expect(p.unigram!.ppl).toBeCloseTo(unigram.ppl, 9);
    expect(stdout).toContain(`perplexity ${p.ppl.toFixed(2)}`);
    // Bits per byte: the bytes counted independently from the vocabulary's byte-level strings.
    expect(p.bytes).toBe(await byteLevelLength(Array.from(stream.subarray(1))));
    expect(p.bpb).toBeCloseTo((p.nll * p.tokens) / (Math.LN2 * p.bytes), 12);
    expect(stdout).toContain(`${p.bpb.toFixed(4)} bits/byte`);
  });

  it("applies an adapter: the same scores as a checkpoint holding the tuned blocks", async () => {
    // The adapter replaces blocks 0 and 2 (split 1 + 1) with other weights.
    const base = await openSource(join(dir, "model"), { split: { bottom: 1, top: 1 } });
    const tuned = [randomWeights(opt.blockShapes(cfg), 400), randomWeights(opt.blockShapes(cfg), 500)];
    const parts = new Map(tuned.map((w, k) => [
      k === 0 ? 0 : 2,
      [...w].map(([name, t]) => ({ name, shape: t.shape, data: t.dataSync() as Float32Array })),
    ]));
    await writeAdapterPackage(join(dir, "adapter"), { model: base, parts, method: "full", settings: {}, extra: {} });
    const middle = await base.loadBlock(1);
    await base.close();
    await saveModel(join(dir, "tuned"), randomWeights(opt.outerShapes(cfg), 1), [tuned[0], middle, tuned[1]]);

    let runs = 0;
    const evalReport = async (args: string[]) => {
      const json = join(dir, `adapter-run-${runs++}.json`);
      await run([...args, "--tasks", "spam_detection", "--limit", "2", "--quiet", "--ppl", "--ppl-data", join(dir, "valid.bin"), "--json", json]);
      return JSON.parse(await readFile(json, "utf8")) as EvalReport;
    };
    const withAdapter = await evalReport(["--model", join(dir, "model"), "--adapter", join(dir, "adapter")]);
    const merged = await evalReport(["--model", join(dir, "tuned")]);
    const plain = await evalReport(["--model", join(dir, "model"), "--stream"]);
    expect(withAdapter.adapter).toBe(join(dir, "adapter"));
    // on 2 threads the workers score the adapted blocks too (docs/DISTRIBUTED.md "How tune and eval use the cores")
    const { seconds: _a, ...onTwo } = await evalReport(["--model", join(dir, "model"), "--adapter", join(dir, "adapter"), "--workers", "2"]);
    const { seconds: _b, ...onOne } = withAdapter;
    expect(onTwo).toEqual(onOne);
    expect(Math.abs(withAdapter.ppl!.nll - merged.ppl!.nll)).toBeLessThan(1e-6);
    expect(Math.abs(withAdapter.ppl!.nll - plain.ppl!.nll)).toBeGreaterThan(1e-4);
  });

  it("refuses unknown tasks and splits, a missing model and a tokenizer larger than the model", async () => {
    await expect(run(["--tasks", "all"])).rejects.toThrow("--model is required");
    await expect(run(["--model", join(dir, "model"), "--tasks", "hellaswag"])).rejects.toThrow('Unknown task "hellaswag"');
    await expect(run(["--model", join(dir, "model"), "--split", "dev"])).rejects.toThrow('--split expects one of test, validation, train, got "dev"');
    await expect(run(["--model", join(dir, "model"), "--limit", "0"])).rejects.toThrow('--limit expects a positive integer, got "0"');
    await expect(run(["--model", fixtureDir("opt"), "--tasks", "spam_detection", "--limit", "1", "--quiet"])).rejects.toThrow(
      "Tokenizer has 6016 ids but the model",
    );
  });

  it("selects tasks of the tasks directory in report order", async () => {
    const dir = EVAL_DEFAULTS.tasksDir;
    const available = await listTasks(dir);
    expect(selectTasks("all", available, dir)).toHaveLength(8);
    expect(selectTasks("brown_genre,lastword_cloze", available, dir)).toEqual(["lastword_cloze", "brown_genre"]);
    expect(selectTasks("capitals,brown_genre", [...available, "capitals"], dir)).toEqual(["brown_genre", "capitals"]);
    expect(() => selectTasks(" , ", available, dir)).toThrow("--tasks names no task");
    expect(() => selectTasks("capitals", available, dir)).toThrow(`Unknown task "capitals": no "capitals/" with task files in "${dir}"`);
  });
});

describe("readTaskItems", () => {
  it("reads a fixture split and honours the limit", async () => {
    const items = await readTaskItems(EVAL_DEFAULTS.tasksDir, "spam_detection", "validation", 5);
    expect(items).toHaveLength(5);
    for (const item of items) {
      expect(item.choices).toEqual([" no", " yes"]);
      expect(item.context.endsWith("Answer:")).toBe(true);
    }
  });

  it("names the file and line of a bad item", async () => {
    const tasks = join(dir, "tasks");
    await rm(tasks, { recursive: true, force: true });
    await mkdir(join(tasks, "t"), { recursive: true });
    const file = join(tasks, "t", "test.jsonl");
    await writeFile(file, '{"id":"a","context":"c","choices":[" x"," y"],"gold":1}\n{"id":"b","context":"c","choices":[" x"," y"],"gold":2}\n');
    await expect(readTaskItems(tasks, "t", "test")).rejects.toThrow(`Cannot read "${file}": line 2 (b) has gold 2 for 2 choices`);
    await expect(readTaskItems(tasks, "t", "train")).rejects.toThrow('Cannot read task "t" split "train"');
  });
});

describe("readTaskFile", () => {
  it("reads items from any path, honours the limit and names a missing file", async () => {
    const file = join(dir, "own items.jsonl");
    await writeFile(file, '{"id":"a","context":"c","choices":[" x"," y"],"gold":1}\n{"id":"b","context":"d","choices":[" x"," y"," z"],"gold":2}\n');
    expect(await readTaskFile(file)).toEqual([
      { id: "a", context: "c", choices: [" x", " y"], gold: 1, doc: "" },
      { id: "b", context: "d", choices: [" x", " y", " z"], gold: 2, doc: "" },
    ]);
    expect((await readTaskFile(file, 1)).map((item) => item.id)).toEqual(["a"]);
    const missing = join(dir, "absent.jsonl");
    await expect(readTaskFile(missing)).rejects.toThrow(`Cannot read task file "${missing}": file does not exist`);
  });
});

describe("a data owner's own tasks", () => {
  it("names an item without id by its line number and rejects an id that is not a string or number", async () => {
    const file = join(dir, "no ids.jsonl");
    await writeFile(file, '{"context":"c","choices":[" x"," y"],"gold":1}\n\n{"id":7,"context":"d","choices":[" x"," y"],"gold":0}\n{"context":"e","choices":[" x"," y"],"gold":0}\n');
    expect((await readTaskFile(file)).map((item) => item.id)).toEqual(["1", "7", "4"]);
    await writeFile(file, '{"id":["a"],"context":"c","choices":[" x"," y"],"gold":1}\n');
    await expect(readTaskFile(file)).rejects.toThrow(`Cannot read "${file}": line 1 has an "id" that is neither a string nor a number`);
  });

  it("lists any directory holding a split file as a task, and names a missing tasks directory", async () => {
    const tasks = join(dir, "own tasks");
    await mkdir(join(tasks, "capitals"), { recursive: true });
    await mkdir(join(tasks, "empty"), { recursive: true });
    await mkdir(join(tasks, "about"), { recursive: true });
    await writeFile(join(tasks, "capitals", "train.jsonl"), '{"context":"c","choices":[" x"," y"],"gold":1}\n');
    await writeFile(join(tasks, "about", "test.jsonl"), '{"context":"c","choices":[" x"," y"],"gold":1}\n');
    await writeFile(join(tasks, "notes.txt"), "not a task\n");
    expect(await listTasks(tasks)).toEqual(["about", "capitals"]);
    expect(await listTasks(EVAL_DEFAULTS.tasksDir)).toHaveLength(8);
    await expect(listTasks(join(dir, "absent"))).rejects.toThrow(`Cannot list tasks in "${join(dir, "absent")}": directory does not exist`);
  });
});
