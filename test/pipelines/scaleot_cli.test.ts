// ScaleOT through the verbs on fixtures/tiny (4 blocks; split 1+1 leaves the
// middle blocks 1 and 2): build-emulator --method scaleot (one block replaced
// by a harmonizer, the other's attention rank-reduced) → tune → plug-in into
// the original, and the flag checks of build-emulator and experiment.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { harmonizerShapes } from "../../src/model/harmonizer.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { tf } from "../../src/tensor/backend.ts";
import { CALIBRATION_FLAGS, TINY, tempRootForFile } from "./tiny_cli.ts";


const root = tempRootForFile("offtune-scaleot-cli-");

const exists = (path: string) => stat(path).then(() => true, () => false);

describe("build-emulator --method scaleot", () => {
  test("bad ScaleOT flag values, and ScaleOT flags on another method, are clear errors", async () => {
    const out = join(root(), "flags");
    const build = (...flags: string[]) =>
      buildEmulator(["--method", "scaleot", "--model", TINY, ...CALIBRATION_FLAGS, "--split", "1,1", "--out", out, "--quiet", ...flags]);
    await expect(build("--replace-fraction", "1")).rejects.toThrow(`--replace-fraction expects a number in [0, 1), got "1"`);
    await expect(build("--rank-reduction=-0.5")).rejects.toThrow(`--rank-reduction expects a number in [0, 1), got "-0.5"`);
    await expect(build("--importance", "greedy")).rejects.toThrow(`--importance expects cheap or rl, got "greedy"`);
    await expect(build("--importance", "rl", "--episodes", "0")).rejects.toThrow(`--episodes expects a positive integer, got "0"`);
    await expect(buildEmulator(["--method", "crash", "--model", TINY, ...CALIBRATION_FLAGS, "--importance", "rl", "--out", out]))
      .rejects.toThrow("--importance applies to --method scaleot only, not crash");
    await expect(buildEmulator(["--method", "scaleot", "--model", TINY, "--out", out])).rejects.toThrow(
      "--calibration is required for --method scaleot (see offtune build-emulator --help)",
    );
    expect(await exists(out)).toBe(false);
  });
});

describe("tune through a ScaleOT emulator, then plug in", () => {
  const emulator = () => join(root(), "emulator");
  const adapter = () => join(root(), "adapter");

  test("the build replaces one middle block, prints its size and the importance correlation", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(await buildEmulator([
        "--method", "scaleot", "--model", TINY, ...CALIBRATION_FLAGS, "--split", "1,1", "--ratio", "0.5",
        "--importance", "rl", "--episodes", "4", "--out", emulator(), "--quiet",
      ])).toBe(0);
      const lines = log.mock.calls.map((c) => String(c[0]));
      const built = await readManifest(emulator());
      expect(built.method).toBe("scaleot");
      expect(built.settings).toMatchObject({ ratio: 0.5, rankReduction: 0.75, importance: "rl", episodes: 4 });
      const replaced = built.settings.replaced as number[];
      expect(replaced.length).toBe(1); // rank 16 of 64 halves each attention projection: keeping one block is nearest 0.5
      const harmonizer = built.shards.find((s) => s.block === replaced[0])!;
      expect(harmonizer.tensors.map((t) => t.name).sort()).toEqual([...harmonizerShapes(64, 8).keys()].sort());
      const [first, last] = (built.extra!.harmonizerLoss as Record<string, number[]>)[String(replaced[0])];
      expect(last).toBeLessThan(0.9 * first); // trained on the real block's hidden states, the harmonizer beats skipping it
      const params = (built.extra!.blocks as Array<{ role: string; params: number }>).filter((b) => b.role === "middle")
        .reduce((n, b) => n + b.params, 0);
      const summary = lines.find((l) => l.startsWith("scaleot: "))!;
      expect(summary).toContain(`replaced blocks ${replaced[0]} (α 0.500)`);
      expect(summary).toContain(`middle params ${params} of `);
      expect(summary).toContain("Spearman correlation of the cheap and RL importance orders");
    } finally {
      log.mockRestore();
    }
  }, 60_000);

  test("an adapter tuned on it plugs into the original: adapter blocks change, middle blocks stay the original's", async () => {
    expect(await tuneVerb([
      "--emulator", emulator(), "--task", "lastword_cloze", "--limit", "4", "--out", adapter(),
      "--epochs", "1", "--batch", "2", "--lr", "1e-2", "--quiet",
    ])).toBe(0);
    const plugged = join(root(), "plugged");
    expect(await plugIn(["--model", TINY, "--adapter", adapter(), "--split", "1,1", "--out", plugged, "--quiet"])).toBe(0);
    const base = await openModel(TINY, { split: { bottom: 1, top: 1 } });
    const result = await openModel(plugged, { split: { bottom: 1, top: 1 } });
    try {
      for (const i of [0, 1, 2, 3]) {
        const [x, y] = [await base.loadBlock(i), await result.loadBlock(i)];
        const same = [...x].every(([name, t]) => tf.equal(t, y.get(name)!).all().dataSync()[0] === 1);
        tf.dispose([...x.values(), ...y.values()]);
        expect(same, `block ${i}`).toBe(i === 1 || i === 2);
      }
    } finally {
      await base.close();
      await result.close();
    }
  }, 60_000);
});

describe("experiment --method scaleot", () => {
  test("is accepted with its flags; ScaleOT flags with another method and a bad estimator are refused", async () => {
    const base = ["--model", TINY, "--runs", join(root(), "runs")];
    const o = await experimentOptions([...base, "--method", "scaleot", "--importance", "rl", "--episodes", "8", "--rank-reduction", "0.5"]);
    expect([o.method, o.importance, o.episodes, o.rankReduction, o.replaceFraction]).toEqual(["scaleot", "rl", 8, 0.5, undefined]);
    await expect(experimentOptions([...base, "--rank-reduction", "0.5"])).rejects.toThrow(
      "--rank-reduction applies to --method scaleot only, not gradot",
    );
    await expect(experimentOptions([...base, "--method", "scaleot", "--importance", "fast"])).rejects.toThrow(
      `--importance expects cheap or rl, got "fast"`,
    );
    await expect(experimentOptions([...base, "--method", "scaleot", "--replace-fraction", "1.2"])).rejects.toThrow(
      `--replace-fraction expects a number in [0, 1), got "1.2"`,
    );
  });
});
