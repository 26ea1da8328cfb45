// The OT distilled baseline through the verbs on fixtures/tiny (4 blocks;
// split 1+1 leaves the middle blocks 1 and 2, ratio 0.5 keeps block 1):
// build-emulator --method ot-distill writes LayerDrop's blocks with the
// distillation recorded, the same parameter count as LayerDrop's, and the
// flag checks of build-emulator and experiment.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { CALIBRATION_FLAGS, TINY, tempRootForFile } from "./tiny_cli.ts";

const DISTILL_FLAGS = ["--distill-steps", "6", "--distill-batch", "2", "--distill-lr", "1e-3", "--distill-mse-weight", "50", "--distill-seed", "3"];

const root = tempRootForFile("offtune-ot-distill-cli-");

const exists = (path: string) => stat(path).then(() => true, () => false);
type Manifest = Awaited<ReturnType<typeof readManifest>>;
/** The parameters of a package's blocks as its manifest lists them (`extra.blocks`). */
const blockParams = (m: Manifest) =>
  (m.extra!.blocks as { params: number }[] | undefined)?.reduce((n, b) => n + b.params, 0) ?? Number.NaN;

describe("build-emulator --method ot-distill", () => {
  test("writes LayerDrop's blocks, the settings and the loss curve, at LayerDrop's size", async () => {
    const out = join(root(), "distilled");
    const layerDrop = join(root(), "layerdrop");
    expect(await buildEmulator([
      "--method", "ot-distill", "--model", TINY, ...CALIBRATION_FLAGS, ...DISTILL_FLAGS, "--split", "1,1", "--ratio", "0.5", "--out", out, "--quiet",
    ])).toBe(0);
    expect(await buildEmulator(["--method", "layerdrop", "--model", TINY, "--split", "1,1", "--ratio", "0.5", "--out", layerDrop, "--quiet"])).toBe(0);
    const [ours, theirs] = [await readManifest(out), await readManifest(layerDrop)];
    expect(ours.method).toBe("ot-distill");
    expect(ours.blockIndices).toEqual([0, 1, 3]);
    expect(ours.blockIndices).toEqual(theirs.blockIndices);
    expect(ours.settings).toMatchObject({
      ratio: 0.5,
      keptMiddle: [1],
      distillation: { steps: 6, batch: 2, lr: 1e-3, mseWeight: 50, seed: 3 },
      calibration: { sequences: 8, length: 32 },
    });
    const curve = ours.extra!.distillation as Record<string, number>;
    expect(Object.keys(curve).sort()).toEqual(["firstLoss", "firstMse", "lastLoss", "lastMse"]);
    expect(curve.lastLoss).toBeLessThan(curve.firstLoss);
    expect(blockParams(ours)).toBe(blockParams(theirs));
    expect(blockParams(ours)).toBeGreaterThan(0);
    expect(await exists(`${out}.ot-distill-state.safetensors`)).toBe(false);
  });

  test("needs --calibration; bad --distill-* values name their flag", async () => {
    const out = join(root(), "flags");
    const base = ["--method", "ot-distill", "--model", TINY, "--split", "1,1", "--out", out, "--quiet"];
    await expect(buildEmulator(base)).rejects.toThrow("--calibration is required for --method ot-distill (see offtune build-emulator --help)");
    await expect(buildEmulator([...base, ...CALIBRATION_FLAGS, "--distill-steps", "0"])).rejects.toThrow(
      `--distill-steps expects a positive integer, got "0"`,
    );
    await expect(buildEmulator([...base, ...CALIBRATION_FLAGS, "--distill-lr", "-1"])).rejects.toThrow("--distill-lr");
    await expect(buildEmulator([...base, ...CALIBRATION_FLAGS, "--distill-mse-weight", "x"])).rejects.toThrow(
      `--distill-mse-weight expects a number, got "x"`,
    );
    await expect(buildEmulator([...base, ...CALIBRATION_FLAGS, "--distill-batch", "1.5"])).rejects.toThrow(
      `--distill-batch expects a positive integer, got "1.5"`,
    );
    expect(await exists(out)).toBe(false);
  });
});

describe("experiment --method ot-distill", () => {
  test("is accepted with its --distill-* settings and needs the calibration file", async () => {
    const base = ["--model", TINY, "--runs", join(root(), "runs")];
    const o = await experimentOptions([...base, "--method", "ot-distill", "--distill-steps", "5", "--distill-mse-weight", "2"]);
    expect(o.method).toBe("ot-distill");
    expect(o.distill).toMatchObject({ steps: 5, mseWeight: 2 });
    await expect(experimentOptions([...base, "--method", "ot-distill", "--distill-batch", "0"])).rejects.toThrow(
      `--distill-batch expects a positive integer, got "0"`,
    );
    await expect(experimentOptions([...base, "--method", "ot-distill", "--calibration", join(root(), "none.bin")])).rejects.toThrow(
      `--calibration: "${join(root(), "none.bin")}" does not exist`,
    );
  });
});
