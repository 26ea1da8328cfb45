// experiment --ratios end to end on fixtures/tiny (4 blocks, split 1+1: 2
// middle blocks): one timed build and one row per ratio, Full ZS and Full FT
// once for both, a rerun that keeps the finished results, and the report's
// frontier.svg through both rows. Tiny limits, and perplexity on the first
// 4096 tokens of the validation stream (all of it takes ~45 s per eval), keep
// it to about a minute.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readRunResult, runExperiment, writeReport } from "../../mod.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { findAll, parseXml } from "../report/xml.ts";

const TINY = "fixtures/tiny";

let root: string;
let pplData: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-experiment-ratios-"));
  pplData = join(root, "valid-4096.bin"); // Uint16 token ids: 4096 tokens are 8192 bytes
  await writeFile(pplData, (await readFile("fixtures/data/pretrain/valid.bin")).subarray(0, 8192));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("experiment --ratios and --split flags", () => {
  test("take a list, refuse --ratio with it, repeats and ratios outside (0, 1]", async () => {
    const base = ["--model", TINY, "--runs", join(root, "flags")];
    const o = await experimentOptions([...base, "--ratios", "0.3,0.5", "--split", "1,1"]);
    expect([o.ratios, o.split]).toEqual([[0.3, 0.5], { bottom: 1, top: 1 }]);
    expect((await experimentOptions([...base, "--ratio", "0.7"])).ratios).toEqual([0.7]);
    expect((await experimentOptions(base)).ratios).toEqual([0.5]);
    await expect(experimentOptions([...base, "--ratio", "0.5", "--ratios", "0.3,0.5"])).rejects.toThrow(
      "--ratio and --ratios: give one",
    );
    await expect(experimentOptions([...base, "--ratios", "0.3,0.3"])).rejects.toThrow("--ratios lists 0.3 twice");
    await expect(experimentOptions([...base, "--ratios", "0.3,1.5"])).rejects.toThrow(`--ratios expects a number in (0, 1], got "1.5"`);
    await expect(experimentOptions([...base, "--split", "1"])).rejects.toThrow(`--split expects "bottom,top" block counts`);
  });
});

describe("experiment --ratios 0.3,0.5 on fixtures/tiny", () => {
  const runs = () => join(root, "runs");
  const argv = (epochs: string) => [
    "--model", TINY, "--runs", runs(), "--ratios", "0.3,0.5", "--split", "1,1", "--tasks", "lastword_cloze", "--seeds", "0",
    "--train-limit", "8", "--eval-limit", "8", "--epochs", epochs, "--sequences", "8", "--ppl-data", pplData, "--jobs", "2", "--quiet",
  ];

  test("writes one timed row per ratio, sharing one Full ZS and one Full FT", async () => {
    const written = await runExperiment(await experimentOptions(argv("1")));
    expect(written.map((p) => p.slice(runs().length + 1))).toEqual(["gradot-r0.3/seed-0/result.json", "gradot-r0.5/seed-0/result.json"]);
    const [small, large] = await Promise.all(written.map(readRunResult));
    expect([small.settings.ratio, large.settings.ratio]).toEqual([0.3, 0.5]);
    expect(small.emulator_params).toBeLessThan(large.emulator_params);
    expect(small.middle_params).toBe(large.middle_params);
    for (const r of [small, large]) expect(r.emulator_build_s).toBeGreaterThan(0);
    expect(small.tasks.lastword_cloze.full_ft).not.toBeNull();
    expect(small.tasks.lastword_cloze.full_ft).toBe(large.tasks.lastword_cloze.full_ft);
    expect(small.tasks.lastword_cloze.full_zs).toBe(large.tasks.lastword_cloze.full_zs);
    const logs = await readdir(join(runs(), "_work", "logs"));
    expect(logs.filter((f) => f.startsWith("build-emulator"))).toHaveLength(2);
    expect(logs.filter((f) => f.startsWith("full-zs"))).toHaveLength(1);
    expect(logs.filter((f) => f.startsWith("full-ft_"))).toHaveLength(1);
  }, 600_000);

  test("run again keeps the finished results; with other settings it names the finished file", async () => {
    const before = await readFile(join(runs(), "gradot-r0.5", "seed-0", "result.json"), "utf8");
    expect(await runExperiment(await experimentOptions(argv("1")))).toEqual([]);
    expect(await readFile(join(runs(), "gradot-r0.5", "seed-0", "result.json"), "utf8")).toBe(before);
    await expect(runExperiment(await experimentOptions(argv("2")))).rejects.toThrow(
      `--runs: "${join(runs(), "gradot-r0.3", "seed-0", "result.json")}" is a finished run with epochs 1, this experiment's is 2`,
    );
  }, 120_000);

  test("report draws both ratios on one line of frontier.svg, with Ratio and Build s in the table", async () => {
    const { markdown, paths } = await writeReport(runs());
    expect(markdown).toMatch(/\| gradot-r0\.3 \| +0\.3 \|/);
    const frontier = parseXml(await readFile(paths.find((p) => p.endsWith("frontier.svg"))!, "utf8"));
    const lines = findAll(frontier, (n) => n.attributes.class === "line");
    expect(lines.map((l) => l.attributes["data-line"])).toEqual(["gradot", "gradot"]); // one per panel
    for (const line of lines) expect(line.attributes.points.split(" ")).toHaveLength(2);
  }, 60_000);
});
