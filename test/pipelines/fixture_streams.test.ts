// The default calibration and held-out streams (fixtures/data/pretrain/*.bin)
// are token ids of the fixture tokenizer. For a model with a tokenizer of its
// own they would be silently meaningless (a vocabulary at least as large as
// the fixture's raises no other error), so experiment and eval --ppl refuse
// them and name the flag to pass instead.
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { evaluate } from "../../mod.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";

let root: string;
let own: string; // fixtures/tiny with another tokenizer of the same size
let same: string; // fixtures/tiny, its tokenizer.json the fixture one
let text: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-fixture-streams-"));
  same = join(root, "same");
  own = join(root, "own");
  await cp("fixtures/tiny", same, { recursive: true });
  await cp("fixtures/tiny", own, { recursive: true });
  // Two ids swapped: the same vocabulary size, another tokenizer.
  const tok = JSON.parse(await readFile(join(own, "tokenizer.json"), "utf8"));
  const [a, b] = Object.keys(tok.model.vocab).slice(300, 302);
  [tok.model.vocab[a], tok.model.vocab[b]] = [tok.model.vocab[b], tok.model.vocab[a]];
  await writeFile(join(own, "tokenizer.json"), JSON.stringify(tok));
  text = join(root, "text.txt");
  await writeFile(text, "Some held-out text of the user's own domain.\n".repeat(50));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("the fixture token streams as defaults", () => {
  test("experiment refuses them for a model with its own tokenizer, naming the flag", async () => {
    const base = ["--model", own, "--runs", join(root, "runs"), "--tasks", "lastword_cloze"];
    await expect(experimentOptions(base)).rejects.toThrow(
      /^--calibration defaults to ".*calibration\.bin", token ids of the fixture tokenizer, but the model's tokenizer is ".*own\/tokenizer\.json": pass --calibration with a text file of your own/,
    );
    await expect(experimentOptions([...base, "--calibration", text])).rejects.toThrow(/^--ppl-data defaults to ".*valid\.bin"/);
    await expect(experimentOptions([...base, "--method", "layerdrop"])).rejects.toThrow(/^--ppl-data defaults to/);
    expect((await experimentOptions([...base, "--calibration", text, "--ppl-data", text])).pplData).toBe(text);
    expect((await experimentOptions([...base, "--method", "layerdrop", "--ppl-data", text])).method).toBe("layerdrop");
  });

  test("experiment takes them for a model with the fixture tokenizer", async () => {
    const o = await experimentOptions(["--model", same, "--runs", join(root, "runs"), "--tasks", "lastword_cloze"]);
    expect(o.pplData).toBeUndefined();
  });

  test("eval --ppl refuses the default held-out stream for a model with its own tokenizer", async () => {
    const options = { tasks: ["lastword_cloze"], limit: 2, quiet: true };
    await expect(evaluate({ ...options, model: own, ppl: {} })).rejects.toThrow(/^--ppl-data defaults to ".*valid\.bin"/);
    const report = await evaluate({ ...options, model: own, ppl: { data: text } });
    expect(report.ppl!.tokens).toBeGreaterThan(0);
  });
});
