// `offtune plot-training` on the shipped fixtures/base logs: the first run and
// its --init continuation drawn as one curve (fixtures/README.md "base").
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { main as plotTraining } from "../../pipelines/plot_training.ts";
import { tempRootForFile } from "./tiny_cli.ts";

const FIRST = "fixtures/base/log_3600.jsonl";
const CONTINUED = "fixtures/base/log_continued_1500.jsonl";

const root = tempRootForFile("offtune-plot-training-");

describe("plot-training with a run and its continuation", () => {
  test("draws both fixtures/base logs end to end: every tracking point, the last one's LayerDrop increase", async () => {
    const loss = join(root(), "loss.svg");
    const layerDrop = join(root(), "layerdrop.svg");
    expect(await plotTraining(["--log", FIRST, "--log", CONTINUED, "--out", loss, "--layerdrop-out", layerDrop])).toBe(0);
    const svg = await readFile(layerDrop, "utf8");
    // 10 tracking points in the first run, 11 in the continuation (its step-0 line included).
    expect(svg.match(/<circle/g)?.length).toBe(2 * 21);
    expect(svg).toContain("last: ppl 72.6 vs 161.5 (+122%)");
    expect(await readFile(loss, "utf8")).toContain(`${FIRST} + ${CONTINUED}`); // the default title names both
    // The shipped curve is this command's output.
    expect(svg).toBe(await readFile("fixtures/base/layerdrop_curve.svg", "utf8"));
  });

  test("refuses a second log that does not continue the first, and a missing one, naming it", async () => {
    const out = join(root(), "bad.svg");
    await expect(plotTraining(["--log", CONTINUED, "--log", FIRST, "--out", out])).rejects.toThrow(
      `Training log "${FIRST}" does not continue the log before it`,
    );
    await expect(plotTraining(["--log", FIRST, "--log", join(root(), "none.jsonl"), "--out", out])).rejects.toThrow(
      /Cannot read training log ".*none\.jsonl": file does not exist/,
    );
  });
});
