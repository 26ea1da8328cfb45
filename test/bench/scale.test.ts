import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { afterAll, describe, expect, it } from "vitest";
import { runVerb } from "../../src/cli/run_verb.ts";
import { PROJECTED_TOKENS, scaleRows } from "../../src/bench/scale.ts";
import type { BenchRow } from "../../src/bench/linalg.ts";

const root = mkdtempSync(join(tmpdir(), "offtune-scale-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const row = (rows: BenchRow[], name: string): BenchRow => {
  const found = rows.find((r) => r.name === name);
  if (!found) throw new Error(`no row "${name}" in ${rows.map((r) => r.name).join(" | ")}`);
  return found;
};

describe("offtune bench scale --quick", () => {
  it("writes sharded random LLaMA and OPT checkpoints, builds both, reports RSS per depth and the projection, and leaves nothing behind", async () => {
    const work = mkdtempSync(join(root, "run-"));
    const json = join(root, "rows.json");
    const log = join(root, "bench.log");
    await runVerb(["bench", "scale", "--quick", "--json", json, "--dir", work], log);
    const rows = JSON.parse(readFileSync(json, "utf8")) as BenchRow[];
    for (const model of ["llama-tiny", "opt-tiny"]) {
      const checkpoint = row(rows, `${model}: checkpoint (random, fp16)`);
      const shards = Number(/^(\d+) shards \+ model\.safetensors\.index\.json/.exec(checkpoint.note ?? "")?.[1]);
      expect(shards).toBeGreaterThanOrEqual(2);
      expect(checkpoint.value).toBeGreaterThan(0);
      expect(row(rows, `${model}: peak RSS`).value).toBeGreaterThan(50);
      const tokens = row(rows, `${model}: calibration tokens`).value;
      expect(tokens).toBe(2 * 32);
      const at = rows.findIndex((r) => r.name === `${model}: peak RSS`);
      const mine = rows.slice(at, rows.findIndex((r, i) => i > at && r.name === `${model}: build at ${PROJECTED_TOKENS} tokens`) + 1);
      expect(mine.some((r) => /^ {2}RSS after the first middle block \(\d+\)$/.test(r.name) && r.value > 50)).toBe(true);
      expect(mine.some((r) => /^ {2}RSS after the last middle block \(\d+\)$/.test(r.name) && r.value > 50)).toBe(true);
      for (const stage of ["forward", "backward", "kfac"]) {
        const measured = row(mine, `  ${stage} per middle block`).value;
        expect(measured).toBeGreaterThan(0);
        expect(row(mine, `  ${stage} per middle block at ${PROJECTED_TOKENS} tokens`).value).toBeCloseTo(measured * PROJECTED_TOKENS / tokens, 10);
      }
      for (const stage of ["svd", "score"]) expect(row(mine, `  ${stage} per middle block`).note).toBe("fixed");
    }
    expect(readFileSync(log, "utf8")).toMatch(/llama-tiny: block \d+: read .*; RSS \d+ MiB, peak \d+ MiB/);
    expect(readdirSync(work)).toEqual([]);
  }, 120_000);

  it("removes what it wrote when stopped by SIGINT", async () => {
    const work = mkdtempSync(join(root, "stop-"));
    const child = spawn(process.execPath, ["--import", "tsx", "pipelines/offtune.ts", "bench", "scale", "--quick", "--dir", work], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes("building the GradOT emulator")) child.kill("SIGINT");
      });
      child.on("exit", (c) => resolve(c));
    });
    expect(code).toBe(130);
    expect(readdirSync(work)).toEqual([]);
  }, 120_000);
});

describe("scaleRows", () => {
  const block = (index: number, scored: boolean, rss: number) => ({
    block: index,
    stages: { read: 1, forward: 2, backward: 4, ...(scored ? { kfac: 1, svd: 3, score: 5 } : {}), write: 0.5 },
    rssBytes: rss * 2 ** 20,
    peakRssBytes: (rss + 10) * 2 ** 20,
  });
  const timings = {
    seconds: 100,
    stages: { read: 4, forward: 8, backward: 16, kfac: 2, svd: 6, score: 10, write: 2, head: 3 },
    peakRssBytes: 500 * 2 ** 20,
    layers: 4,
    tokens: 256,
    blocks: [block(3, false, 300), block(2, true, 400), block(1, true, 420), block(0, false, 410)],
  };

  it("projects the token stages by 2048 / tokens and keeps the others as measured", () => {
    const rows = scaleRows("m", timings);
    expect(row(rows, "  forward per middle block at 2048 tokens").value).toBe(16);
    expect(row(rows, "  kfac per middle block at 2048 tokens").value).toBe(8);
    expect(row(rows, "  per middle block").value).toBe(16.5);
    // 2·8 + 4·8 + 1·8 fixed 1 + 3 + 5 + 0.5
    expect(row(rows, "  per middle block at 2048 tokens").value).toBe(65.5);
    expect(row(rows, "m: build at 2048 tokens").value).toBe(100 + 7 * (8 + 16 + 2 + 3));
    expect(row(rows, "  RSS after the first middle block (2)").value).toBe(400);
    expect(row(rows, "  RSS after the last middle block (1)").value).toBe(420);
    expect(row(rows, "  peak RSS growth, first to last middle block").value).toBe(20);
  });

  it("refuses timings without a middle block", () => {
    expect(() => scaleRows("m", { ...timings, blocks: [block(0, false, 1)] })).toThrow("the m build reported no middle block");
  });
});
