import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  parseRunResult,
  readRunResult,
  type RunResult,
  RunResultError,
  runResultPath,
  validateRunResult,
  writeRunResult,
} from "../../src/report/run_result.ts";
import { fixtureResults } from "./fixture.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-run-result-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const valid = (): RunResult => fixtureResults()[1];
const FILE = "runs/gradot/seed-0/result.json";

/** The RunResultError that validating `value` throws. */
function failure(value: unknown): RunResultError {
  try {
    validateRunResult(value, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(RunResultError);
    return e as RunResultError;
  }
  throw new Error("validation passed");
}

/** A valid result with `edit` applied to a deep copy. */
function edited(edit: (r: Record<string, any>) => void): unknown {
  const copy = JSON.parse(JSON.stringify(valid()));
  edit(copy);
  return copy;
}

describe("validateRunResult", () => {
  it("accepts a valid result and returns the same content", () => {
    const result = valid();
    expect(validateRunResult(JSON.parse(JSON.stringify(result)), FILE)).toEqual(result);
  });

  it("accepts null full_ft and null ppl.plug_in", () => {
    const value = edited((r) => {
      r.tasks.piqa.full_ft = null;
      r.ppl.plug_in = null;
    });
    const result = validateRunResult(value, FILE);
    expect(result.tasks.piqa.full_ft).toBeNull();
    expect(result.ppl.plug_in).toBeNull();
  });

  const cases: [string, (r: Record<string, any>) => void, string, RegExp][] = [
    ["a missing top-level field", (r) => delete r.model, "model", /is missing/],
    ["a missing task field", (r) => delete r.tasks.piqa.emulator_ft, "tasks.piqa.emulator_ft", /is missing/],
    ["a missing ppl field", (r) => delete r.ppl.emulator, "ppl.emulator", /is missing/],
    ["an unknown (misspelt) field", (r) => (r.tasks.piqa.plugin = 3), "tasks.piqa.plugin", /is not a field of format version 1/],
    ["another format version", (r) => (r.formatVersion = 2), "formatVersion", /must be 1, got 2/],
    ["a percentage above 100", (r) => (r.tasks.piqa.plug_in = 173.2), "tasks.piqa.plug_in", /percentage in \[0, 100\], got 173\.2/],
    ["a negative percentage", (r) => (r.tasks.arc_easy.full_zs = -1), "tasks.arc_easy.full_zs", /got -1/],
    ["a string accuracy", (r) => (r.tasks.piqa.full_zs = "60"), "tasks.piqa.full_zs", /got "60"/],
    ["a null that may not be null", (r) => (r.tasks.piqa.emulator_zs = null), "tasks.piqa.emulator_zs", /got null/],
    ["a fractional seed", (r) => (r.seed = 1.5), "seed", /integer ≥ 0, got 1\.5/],
    ["zero examples", (r) => (r.tasks.piqa.n = 0), "tasks.piqa.n", /integer ≥ 1, got 0/],
    ["a zero emulator size", (r) => (r.emulator_params = 0), "emulator_params", /integer ≥ 1/],
    ["an unknown metric", (r) => (r.metric = "f1"), "metric", /"acc" or "acc_norm", got "f1"/],
    ["a label that is no directory name", (r) => (r.label = "a/b"), "label", /directory name/],
    ["an empty model", (r) => (r.model = ""), "model", /non-empty string/],
    ["settings that are an array", (r) => (r.settings = [1]), "settings", /must be an object, got an array/],
    ["no tasks", (r) => (r.tasks = {}), "tasks", /at least one task/],
    ["a task that is not an object", (r) => (r.tasks.piqa = 5), "tasks.piqa", /must be an object, got 5/],
    ["a perplexity below 1", (r) => (r.ppl.full = 0.5), "ppl.full", /perplexity ≥ 1, got 0\.5/],
  ];
  for (const [what, edit, field, message] of cases) {
    it(`refuses ${what}, naming the file and the field`, () => {
      const e = failure(edited(edit));
      expect(e.file).toBe(FILE);
      expect(e.field).toBe(field);
      expect(e.message).toContain(`Invalid run result "${FILE}": field "${field}"`);
      expect(e.message).toMatch(message);
    });
  }

  it("refuses a value that is not an object", () => {
    expect(failure([1, 2]).message).toBe(`Invalid run result "${FILE}": must be an object, got an array`);
  });

  it("refuses NaN where JSON could not carry it", () => {
    const result = { ...valid(), emulator_params: Number.NaN };
    expect(failure(result).field).toBe("emulator_params");
  });
});

describe("parseRunResult", () => {
  it("refuses text that is not JSON, naming the file", () => {
    expect(() => parseRunResult("{ not json", FILE)).toThrow(`Invalid run result "${FILE}": not valid JSON`);
  });
});

describe("writeRunResult / readRunResult", () => {
  it("writes to <runs>/<label>/seed-<n>/result.json and reads back the same result", async () => {
    const runs = join(root, "roundtrip");
    const result = valid();
    const path = await writeRunResult(runs, result);
    expect(path).toBe(join(runs, "gradot", "seed-0", "result.json"));
    expect(path).toBe(runResultPath(runs, "gradot", 0));
    expect(JSON.parse(await readFile(path, "utf8"))).toEqual(result);
    expect(await readRunResult(path)).toEqual(result);
  });

  it("refuses to write an invalid result and leaves no file", async () => {
    const runs = join(root, "invalid");
    const bad = { ...valid(), metric: "f1" } as unknown as RunResult;
    await expect(writeRunResult(runs, bad)).rejects.toThrow(/field "metric"/);
    await expect(readFile(runResultPath(runs, "gradot", 0))).rejects.toThrow();
  });

  it("names a missing file when reading", async () => {
    const path = join(root, "nowhere", "result.json");
    await expect(readRunResult(path)).rejects.toThrow(`Cannot read run result "${path}": file does not exist`);
  });

  it("names the file and field of a bad file on disk", async () => {
    const dir = join(root, "bad-on-disk");
    await mkdir(dir, { recursive: true });
    const path = join(dir, "result.json");
    await writeFile(path, JSON.stringify(edited((r) => (r.ppl.plug_in = "x"))));
    await expect(readRunResult(path)).rejects.toThrow(`Invalid run result "${path}": field "ppl.plug_in"`);
  });
});

describe("validateRunResult: a task's optional chance", () => {
  it("accepts a chance percentage and keeps it; a file without one stays valid", () => {
    const result = validateRunResult(edited((r) => (r.tasks.piqa.chance = 50)), FILE);
    expect(result.tasks.piqa.chance).toBe(50);
    expect("chance" in result.tasks.arc_easy).toBe(false);
  });

  it("refuses a chance outside [0, 100], naming the field", () => {
    const e = failure(edited((r) => (r.tasks.piqa.chance = 150)));
    expect(e.field).toBe("tasks.piqa.chance");
    expect(e.message).toMatch(/percentage in \[0, 100\], got 150/);
  });
});

describe("validateRunResult: the optional emulator_build_s", () => {
  it("accepts seconds ≥ 0 and keeps them; a file without them stays valid", () => {
    expect(validateRunResult(edited((r) => (r.emulator_build_s = 12.5)), FILE).emulator_build_s).toBe(12.5);
    expect("emulator_build_s" in validateRunResult(valid(), FILE)).toBe(false);
  });

  it("refuses negative or non-numeric seconds, naming the field", () => {
    for (const bad of [-1, "12", null]) {
      const e = failure(edited((r) => (r.emulator_build_s = bad)));
      expect(e.field).toBe("emulator_build_s");
      expect(e.message).toMatch(/finite number of seconds ≥ 0/);
    }
  });

  it("reads the committed results of the first fixtures/base (3,600 steps), written before the field existed", async () => {
    const result = await readRunResult("docs/results/base-3600/base/runs/gradot-r0.5/seed-0/result.json");
    expect(result.emulator_build_s).toBeUndefined();
    expect(result.settings.ratio).toBe(0.5);
  });
});
