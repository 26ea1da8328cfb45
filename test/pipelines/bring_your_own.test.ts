/**
 * A user's own checkpoint, tokenizer, calibration text and tasks through the
 * whole loop, by the CLI as the user guide gives it: build-emulator → tune →
 * plug-in → eval, then experiment → report. The checkpoint is a random OPT
 * in Hugging Face layout with a byte-level BPE trained here on a few KB of
 * text (a vocabulary unlike the fixture tokenizer's), and the task
 * `capitals` is written by hand, its items without ids. Nothing else in the
 * tests uses them. Tiny settings: the properties checked are that each step
 * accepts the user's files and uses the user's tokenizer, not accuracy.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { run } from "../../pipelines/offtune.ts";
import type { EvalReport } from "../../mod.ts";
import { countPreTokens, trainBpe } from "../../src/data/bpe_train.ts";
import { OPT_SPECIAL_TOKENS, tokenizerConfigJson, toTokenizerJson } from "../../src/data/tokenizer_json.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";

const COUNTRIES: Array<[string, string]> = [
  ["France", "Paris"], ["Spain", "Madrid"], ["Italy", "Rome"], ["Germany", "Berlin"], ["Portugal", "Lisbon"],
  ["Austria", "Vienna"], ["Poland", "Warsaw"], ["Greece", "Athens"], ["Norway", "Oslo"], ["Sweden", "Stockholm"],
  ["Finland", "Helsinki"], ["Ireland", "Dublin"], ["Egypt", "Cairo"], ["Japan", "Tokyo"], ["Peru", "Lima"],
  ["Chile", "Santiago"], ["Kenya", "Nairobi"], ["Canada", "Ottawa"],
];

/** A few KB of text in the task's domain: the BPE's training text and the calibration documents. */
function corpus(): string[] {
  return COUNTRIES.flatMap(([country, capital], i) => [
    `The capital of ${country} is ${capital}. ${capital} lies in ${country}, and many people visit ${capital} each year.`,
    `In ${country} the government meets in ${capital}; the largest museums of ${country} are found there too (${i + 1}).`,
  ]);
}

/** A capitals item without id: the gold capital and the next country's capital. */
function item(k: number, gold: number): Record<string, unknown> {
  const [country, capital] = COUNTRIES[k % COUNTRIES.length];
  const other = COUNTRIES[(k + 5) % COUNTRIES.length][1];
  const choices = gold === 0 ? [` ${capital}`, ` ${other}`] : [` ${other}`, ` ${capital}`];
  return { context: `The capital of ${country} is`, choices, gold };
}

const jsonl = (records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";

let root: string;
let model: string;
let tasks: string;
let calibration: string;
let tokenizerBytes: Buffer;

/** Runs `offtune <args>` in this process and expects exit code 0. */
async function offtune(...args: string[]): Promise<void> {
  expect(await run(args), args.join(" ")).toBe(0);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-byo-"));
  model = join(root, "my-model");
  tasks = join(root, "my-tasks");
  const text = corpus();
  const vocabulary = trainBpe(countPreTokens(text.join("\n")), { vocabSize: 300, specialTokens: OPT_SPECIAL_TOKENS });
  const vocabSize = vocabulary.tokens.length;
  await writeRandomOpt(model, { layers: 5, hidden: 32, heads: 2, ffn: 64, maxPositions: 48, vocabSize, bosId: 2, eosId: 2, padId: 1 }, {
    dtype: "F32",
    seed: 7,
  });
  await writeFile(join(model, "tokenizer.json"), JSON.stringify(toTokenizerJson(vocabulary)));
  await writeFile(join(model, "tokenizer_config.json"), JSON.stringify(tokenizerConfigJson()));
  tokenizerBytes = await readFile(join(model, "tokenizer.json"));
  calibration = join(root, "calibration.jsonl");
  await writeFile(calibration, jsonl(text.map((t) => ({ text: t }))));
  await mkdir(join(tasks, "capitals"), { recursive: true });
  await writeFile(join(tasks, "capitals", "train.jsonl"), jsonl(Array.from({ length: 12 }, (_, k) => item(k, k % 2))));
  await writeFile(join(tasks, "capitals", "test.jsonl"), jsonl(Array.from({ length: 6 }, (_, k) => item(k + 12, (k + 1) % 2))));
  await writeFile(join(root, "held_out.txt"), text.slice(0, 8).join("\n"));
}, 60_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("bring your own checkpoint, tokenizer, calibration text and tasks", () => {
  it("is a Hugging Face layout whose tokenizer is not the fixture one", async () => {
    for (const file of ["config.json", "model.safetensors", "tokenizer.json"]) expect(existsSync(join(model, file)), file).toBe(true);
    const fixture = await loadTokenizer(fileURLToPath(new URL("../../fixtures/tokenizer/tokenizer.json", import.meta.url)));
    const own = await loadTokenizer(join(model, "tokenizer.json"));
    expect(own.vocabSize).toBe(300);
    expect(own.encode("The capital of France is Paris.")).not.toEqual(fixture.encode("The capital of France is Paris."));
  });

  it("build-emulator, tune, plug-in and eval run on them, each package carrying the model's tokenizer", async () => {
    const emulator = join(root, "emulator");
    const adapter = join(root, "adapter");
    const plugged = join(root, "plugged");
    const notices = vi.spyOn(console, "error");
    await offtune(
      "build-emulator", "--model", model, "--calibration", calibration, "--out", emulator,
      "--sequences", "4", "--length", "16", "--split", "1,1", "--quiet",
    );
    expect((await readManifest(emulator)).settings.calibration).toEqual({ sequences: 4, length: 16 });
    expect(await readFile(join(emulator, "tokenizer.json"))).toEqual(tokenizerBytes);

    await offtune(
      "tune", "--emulator", emulator, "--task", "capitals", "--tasks-dir", tasks, "--out", adapter,
      "--epochs", "1", "--batch", "4", "--quiet",
    );
    const tuned = await readManifest(adapter);
    expect(tuned.extra).toMatchObject({ task: "capitals", tokenizer: join(emulator, "tokenizer.json"), examples: 12 });
    expect(await readFile(join(adapter, "tokenizer.json"))).toEqual(tokenizerBytes);

    await offtune("plug-in", "--model", model, "--adapter", adapter, "--out", plugged, "--split", "1,1", "--quiet");
    expect(await readFile(join(plugged, "tokenizer.json"))).toEqual(tokenizerBytes);

    const viaAdapter = join(root, "eval_adapter.json");
    const viaPlugIn = join(root, "eval_plugged.json");
    const common = ["--tasks", "capitals", "--tasks-dir", tasks, "--ppl", "--ppl-data", join(root, "held_out.txt"), "--quiet"];
    await offtune("eval", "--model", model, "--adapter", adapter, ...common, "--json", viaAdapter);
    await offtune("eval", "--model", plugged, ...common, "--json", viaPlugIn);
    const a = JSON.parse(await readFile(viaAdapter, "utf8")) as EvalReport;
    const p = JSON.parse(await readFile(viaPlugIn, "utf8")) as EvalReport;
    expect(a.tasks.capitals.n).toBe(6);
    expect(p.tasks.capitals.acc).toBe(a.tasks.capitals.acc);
    expect(p.ppl!.unigram).toBeNull(); // the fixture unigram counts are another tokenizer's
    expect(Math.abs(p.ppl!.nll - a.ppl!.nll)).toBeLessThan(1e-4 * a.ppl!.nll);
    // No step fell back to the fixture tokenizer (it says so on stderr when it does).
    expect(notices.mock.calls.flat().join("\n")).not.toContain("no tokenizer.json");
    notices.mockRestore();
  }, 120_000);

  it("refuses a token stream of another tokenizer as calibration, naming the file", async () => {
    const fixtureStream = fileURLToPath(new URL("../../fixtures/data/pretrain/calibration.bin", import.meta.url));
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(await run(["build-emulator", "--model", model, "--calibration", fixtureStream, "--out", join(root, "never"), "--quiet"])).toBe(1);
    expect(errors.mock.calls.flat().join("\n")).toMatch(
      new RegExp(`Cannot read calibration file ".*calibration\\.bin": token \\d+ has id \\d+, outside the model's vocabulary of 300`),
    );
    errors.mockRestore();
    expect(existsSync(join(root, "never"))).toBe(false);
  });

  it("experiment and report run the loop on them; a failing step's own error is reported", async () => {
    const runs = join(root, "runs");
    const flags = [
      "--model", model, "--tasks-dir", tasks, "--calibration", calibration, "--ppl-data", join(root, "held_out.txt"),
      "--sequences", "4", "--seeds", "0", "--epochs", "1", "--no-full-ft", "--jobs", "2", "--quiet",
    ];
    await offtune("experiment", "--runs", runs, ...flags);
    const result = JSON.parse(await readFile(join(runs, "gradot-r0.5", "seed-0", "result.json"), "utf8"));
    expect(Object.keys(result.tasks)).toEqual(["capitals"]);
    expect(result.tasks.capitals.n).toBe(6);
    await offtune("report", "--runs", runs);
    expect(await readFile(join(runs, "_report", "report.md"), "utf8")).toContain("capitals");

    // A bad calibration document: the first step fails, and experiment says why.
    const badCalibration = join(root, "bad_calibration.jsonl");
    await writeFile(badCalibration, jsonl([{ text: "The capital of Peru is Lima." }, { txt: "a typo" }]));
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(await run(["experiment", "--runs", join(root, "runs-bad"), ...flags, "--calibration", badCalibration])).toBe(1);
    const said = errors.mock.calls.flat().join("\n");
    errors.mockRestore();
    expect(said).toMatch(/offtune build-emulator .* exited with 1: offtune build-emulator: Cannot read calibration file ".*bad_calibration\.jsonl": line 2 has no string "text" \(log: /);
  }, 180_000);
});
