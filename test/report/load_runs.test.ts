import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRuns } from "../../src/report/load_runs.ts";
import { writeRunResult } from "../../src/report/run_result.ts";
import { fixtureResults } from "./fixture.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-load-runs-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
/** A fresh runs directory holding the fixture's results. */
async function fixtureRuns(): Promise<string> {
  const runs = join(root, `runs-${counter++}`);
  for (const result of fixtureResults()) await writeRunResult(runs, result);
  return runs;
}

describe("loadRuns", () => {
  it("loads every result, ordered by label then seed, with its path", async () => {
    const runs = await fixtureRuns();
    const loaded = await loadRuns(runs);
    expect(loaded.map((r) => `${r.result.label}/${r.result.seed}`)).toEqual([
      "gradot/0", "gradot/1", "gradot/2", "ot-layerdrop/7",
    ]);
    expect(loaded[3].path).toBe(join(runs, "ot-layerdrop", "seed-7", "result.json"));
  });

  it("skips _ and . entries and other files, and other directories inside a label", async () => {
    const runs = await fixtureRuns();
    await mkdir(join(runs, "_report"));
    await mkdir(join(runs, ".cache"));
    await writeFile(join(runs, "README.txt"), "notes");
    await mkdir(join(runs, "gradot", "adapter"));
    await mkdir(join(runs, "gradot", "_seed-9"));
    expect(await loadRuns(runs)).toHaveLength(4);
  });

  it("refuses a result whose label is not its directory", async () => {
    const runs = await fixtureRuns();
    await rename(join(runs, "ot-layerdrop"), join(runs, "ot-drop"));
    const path = join(runs, "ot-drop", "seed-7", "result.json");
    await expect(loadRuns(runs)).rejects.toThrow(
      `Invalid run result "${path}": field "label" is "ot-layerdrop" but the directory is "ot-drop"`,
    );
  });

  it("refuses a result whose seed is not its directory", async () => {
    const runs = await fixtureRuns();
    await rename(join(runs, "ot-layerdrop", "seed-7"), join(runs, "ot-layerdrop", "seed-8"));
    await expect(loadRuns(runs)).rejects.toThrow(/field "seed" is 7 but the directory is "seed-8"/);
  });

  it("refuses a seed directory without result.json", async () => {
    const runs = await fixtureRuns();
    await mkdir(join(runs, "gradot", "seed-3"));
    const path = join(runs, "gradot", "seed-3", "result.json");
    await expect(loadRuns(runs)).rejects.toThrow(`Cannot read run result "${path}": file does not exist`);
  });

  it("refuses a malformed seed directory name", async () => {
    const runs = await fixtureRuns();
    await mkdir(join(runs, "gradot", "seed-01"));
    await expect(loadRuns(runs)).rejects.toThrow(/gradot\/seed-01" is not named seed-<n>/);
  });

  it("refuses a label directory without seeds", async () => {
    const runs = await fixtureRuns();
    await mkdir(join(runs, "scaleot"));
    await expect(loadRuns(runs)).rejects.toThrow(/"[^"]*scaleot" holds no seed-<n> directory/);
  });

  it("refuses a missing or empty runs directory", async () => {
    const empty = join(root, "empty");
    await mkdir(empty);
    await expect(loadRuns(empty)).rejects.toThrow(/holds no <label>\/seed-<n>\/result.json/);
    await expect(loadRuns(join(root, "absent"))).rejects.toThrow(/Cannot read runs directory ".*absent": not a directory/);
  });
});
