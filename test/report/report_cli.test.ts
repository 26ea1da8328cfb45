import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { help, main } from "../../pipelines/report.ts";
import { writeRunResult } from "../../src/report/run_result.ts";
import { fixtureResults, GRADOT } from "./fixture.ts";
import { parseXml } from "./xml.ts";

let root: string;
let runs: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-report-cli-"));
  runs = join(root, "runs");
  for (const result of fixtureResults()) await writeRunResult(runs, result);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Runs the verb with stdout/stderr captured. */
async function run(argv: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    return { code: await main(argv), stdout };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

type Json = Record<string, unknown>;
const isNumber = (v: unknown) => typeof v === "number" && Number.isFinite(v);
const isInt = (v: unknown) => Number.isSafeInteger(v);
const isNumberOrNull = (v: unknown) => v === null || isNumber(v);

/** Problems of `row` against the stable keys (docs/REPORT.md), by an independent reading of the spec. */
function rowProblems(row: Json, tasks: string[]): string[] {
  const problems: string[] = [];
  const need = (obj: Json, key: string, ok: (v: unknown) => boolean, where: string) => {
    if (!(key in obj)) problems.push(`${where}.${key} missing`);
    else if (!ok(obj[key])) problems.push(`${where}.${key} has the wrong type: ${JSON.stringify(obj[key])}`);
  };
  need(row, "method", (v) => typeof v === "string", "row");
  need(row, "settings", (v) => typeof v === "object" && v !== null && !Array.isArray(v), "row");
  need(row, "emulator_params", isInt, "row");
  need(row, "middle_params", isInt, "row");
  const accuracies = (obj: Json, where: string) => {
    for (const key of ["full_zs", "emulator_zs", "emulator_ft", "plug_in", "delta"]) need(obj, key, isNumber, where);
    need(obj, "full_ft", isNumberOrNull, where);
  };
  accuracies(row, "row");
  need(row, "per_task", (v) => typeof v === "object" && v !== null, "row");
  const perTask = row.per_task as Json;
  expect(Object.keys(perTask).sort()).toEqual([...tasks].sort());
  for (const task of tasks) accuracies(perTask[task] as Json, `per_task.${task}`);
  need(row, "ppl", (v) => typeof v === "object" && v !== null, "row");
  need(row.ppl as Json, "full", isNumber, "ppl");
  need(row.ppl as Json, "emulator", isNumber, "ppl");
  need(row.ppl as Json, "plug_in", isNumberOrNull, "ppl");
  return problems;
}

describe("offtune report", () => {
  it("has help naming its flags", () => {
    for (const flag of ["--runs", "--out", "--title", "--baseline"]) expect(help).toContain(flag);
  });

  it("writes report.md, report.json and the SVGs, and prints report.md", async () => {
    const out = join(root, "out");
    const { code, stdout } = await run(["--runs", runs, "--out", out, "--title", "Tiny & test"]);
    expect(code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(
      ["frontier.svg", "privacy.svg", "report.json", "report.md", "tasks-gradot.svg", "tasks-ot-layerdrop.svg"],
    );
    const markdown = await readFile(join(out, "report.md"), "utf8");
    expect(stdout).toBe(markdown);
    expect(markdown.startsWith("# Tiny & test\n")).toBe(true);
    for (const file of ["frontier.svg", "privacy.svg", "tasks-gradot.svg", "tasks-ot-layerdrop.svg"]) {
      expect(parseXml(await readFile(join(out, file), "utf8")).name).toBe("svg");
    }
  });

  it("writes report.json with every required key, typed as the spec says", async () => {
    const out = join(root, "schema");
    await run(["--runs", runs, "--out", out]);
    const json = JSON.parse(await readFile(join(out, "report.json"), "utf8")) as Json;
    for (const key of ["model", "tasks", "rows"]) expect(json).toHaveProperty(key);
    expect(json.model).toBe("tiny-opt");
    expect(Array.isArray(json.tasks) && (json.tasks as unknown[]).every((t) => typeof t === "string")).toBe(true);
    const rows = json.rows as Json[];
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(rowProblems(row, json.tasks as string[])).toEqual([]);
    expect(rows.map((r) => r.method)).toEqual(["gradot", "ot-layerdrop"]);
    expect(rows[0].plug_in as number).toBeCloseTo(GRADOT.plug_in[0], 9);
    expect(rows[0].seeds).toBe(3);
    expect((rows[0].std as Json).plug_in as number).toBeCloseTo(GRADOT.plug_in[1], 9);
  });

  it("shows mean ± std with the seed count in the averaged table", async () => {
    const { stdout } = await run(["--runs", runs, "--out", join(root, "md")]);
    const line = stdout.split("\n").find((l) => l.startsWith("| gradot"))!;
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    // Method, Ratio, Full ZS, Emu ZS, Full FT, Emu FT, Plug-in, Δ, Emu size, Build s, Seeds
    expect(cells).toEqual([
      "gradot",
      "0.5",
      "52.50 ± 0.00",
      `29.50 ± ${Math.sqrt(5.25).toFixed(2)}`,
      "–",
      `46.33 ± ${Math.sqrt(4 / 3).toFixed(2)}`,
      `57.00 ± ${Math.sqrt(7).toFixed(2)}`,
      `10.67 ± ${Math.sqrt(13 / 3).toFixed(2)}`,
      "55.0%",
      "–",
      "3",
    ]);
    expect(stdout).toContain("## arc_easy (40 examples)");
    expect(stdout).toContain("## Perplexity");
    expect(stdout).toMatch(/\| ot-layerdrop +\| +20\.00 \| +70\.00 \| +– \|/);
  });

  it("writes into <runs>/_report by default, which a second run ignores", async () => {
    await run(["--runs", runs]);
    const again = await run(["--runs", runs]);
    expect(again.code).toBe(0);
    expect(await readdir(join(runs, "_report"))).toContain("report.json");
  });

  it("fails naming the file and field of a bad result", async () => {
    const bad = join(root, "bad");
    for (const result of fixtureResults()) await writeRunResult(bad, result);
    const path = join(bad, "gradot", "seed-1", "result.json");
    const json = JSON.parse(await readFile(path, "utf8"));
    json.tasks.piqa.emulator_ft = 0.42e3;
    await writeFile(path, JSON.stringify(json));
    await expect(run(["--runs", bad])).rejects.toThrow(`Invalid run result "${path}": field "tasks.piqa.emulator_ft"`);
  });

  it("compares every other row with --baseline in report.json, and refuses a label no row has", async () => {
    const out = join(root, "baseline");
    await run(["--runs", runs, "--out", out, "--baseline", "gradot"]);
    const json = JSON.parse(await readFile(join(out, "report.json"), "utf8")) as Json;
    const comparisons = json.comparisons as Json[];
    expect(comparisons.map((c) => [c.label, c.reference])).toEqual([["ot-layerdrop", "gradot"]]);
    expect((comparisons[0].emulator_zs as Json).n).toBe(2); // one pair per task
    expect(((json.rows as Json[])[0].claims as Json).plug_in_vs_full_ft).toHaveProperty("lo");
    await expect(run(["--runs", runs, "--out", out, "--baseline", "nope"])).rejects.toThrow(
      `--baseline: no row is labelled "nope" (rows: gradot, ot-layerdrop)`,
    );
  });

  it("requires --runs and refuses unknown flags", async () => {
    await expect(run([])).rejects.toThrow(/--runs is required/);
    await expect(run(["--runs", runs, "--colour"])).rejects.toThrow(/colour/);
  });
});
