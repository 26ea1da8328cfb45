// The CRaSh baseline through the verbs on fixtures/tiny (4 blocks; split 1+1
// leaves the 2 middle blocks 1 and 2, which ratio 0.5 clusters into one
// group run by block 1 twice): build-emulator --method crash → tune → eval
// with the adapter → plug-in into the original, and the flag checks of
// build-emulator and experiment.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import type { EvalReport } from "../../mod.ts";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as evalVerb } from "../../pipelines/eval.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { openModel } from "../../src/model/model_handle.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { tf } from "../../src/tensor/backend.ts";
import { CALIBRATION_FLAGS, TINY, tempRootForFile } from "./tiny_cli.ts";


const root = tempRootForFile("offtune-crash-cli-");

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Whether block `i` of `a` and of `b` hold bit-identical weights. */
async function sameBlock(a: ModelHandle, b: ModelHandle, i: number): Promise<boolean> {
  const [x, y] = [await a.loadBlock(i), await b.loadBlock(i)];
  const same = [...x].every(([name, t]) => {
    const [p, q] = [t.dataSync(), y.get(name)!.dataSync()];
    return p.length === q.length && p.every((v, k) => Object.is(v, q[k]));
  });
  tf.dispose([...x.values(), ...y.values()]);
  return same;
}

describe("build-emulator --method crash", () => {
  test("needs --calibration and a split that leaves middle blocks", async () => {
    const out = join(root(), "flags");
    await expect(buildEmulator(["--method", "crash", "--model", TINY, "--out", out, "--quiet"])).rejects.toThrow(
      "--calibration is required for --method crash (see offtune build-emulator --help)",
    );
    await expect(buildEmulator(["--method", "crash", "--model", TINY, ...CALIBRATION_FLAGS, "--out", out, "--quiet"])).rejects.toThrow(
      `Adapter split 2+2 leaves no middle block in "${TINY}" (4 blocks)`,
    );
    await expect(buildEmulator(["--method", "crash", "--model", TINY, ...CALIBRATION_FLAGS, "--ratio", "0", "--out", out, "--quiet"]))
      .rejects.toThrow(`--ratio expects a number in (0, 1], got "0"`);
    expect(await exists(out)).toBe(false);
  });
});

describe("tune through a CRaSh emulator, then plug in", () => {
  const emulator = () => join(root(), "emulator");
  const adapter = () => join(root(), "adapter");

  test("the emulator shares block 1 at positions 1 and 2; an adapter tuned on it evaluates there", async () => {
    expect(await buildEmulator([
      "--method", "crash", "--model", TINY, ...CALIBRATION_FLAGS, "--split", "1,1", "--ratio", "0.5", "--out", emulator(), "--quiet",
    ])).toBe(0);
    const built = await readManifest(emulator());
    expect([built.method, built.formatVersion, built.blockIndices]).toEqual(["crash", 3, [0, 1, 1, 3]]);
    expect(built.shards.map((s) => s.block)).toEqual([0, 1, 3, "outer"]);
    expect(built.settings).toMatchObject({ ratio: 0.5, groups: [[1, 2]], keptMiddle: [1] });

    expect(await tuneVerb([
      "--emulator", emulator(), "--task", "lastword_cloze", "--limit", "4", "--out", adapter(),
      "--epochs", "1", "--batch", "2", "--lr", "1e-2", "--quiet",
    ])).toBe(0);
    const manifest = await readManifest(adapter());
    expect(manifest.kind).toBe("adapter");
    expect(manifest.shards.map((s) => s.block)).toEqual([0, 3]);
    expect(manifest.split).toEqual({ bottom: 1, top: 1 });

    const json = join(root(), "emulator_ft.json");
    expect(await evalVerb([
      "--model", emulator(), "--adapter", adapter(), "--tasks", "lastword_cloze", "--limit", "4", "--json", json, "--quiet",
    ])).toBe(0);
    const report = JSON.parse(await readFile(json, "utf8")) as EvalReport;
    expect(report.tasks.lastword_cloze.n).toBe(4);
  });

  test("plug-in puts the tuned blocks 0 and 3 around the original middle blocks 1 and 2, both unchanged", async () => {
    const plugged = join(root(), "plugged");
    expect(await plugIn(["--model", TINY, "--adapter", adapter(), "--split", "1,1", "--out", plugged, "--quiet"])).toBe(0);
    const base = await openModel(TINY, { split: { bottom: 1, top: 1 } });
    const result = await openModel(plugged, { split: { bottom: 1, top: 1 } });
    try {
      expect(await sameBlock(base, result, 0)).toBe(false);
      expect(await sameBlock(base, result, 3)).toBe(false);
      expect(await sameBlock(base, result, 1)).toBe(true);
      expect(await sameBlock(base, result, 2)).toBe(true); // the original's own block 2, not the shared block 1
    } finally {
      await base.close();
      await result.close();
    }
  });
});

describe("experiment --method crash", () => {
  test("is accepted and needs the calibration file", async () => {
    const base = ["--model", TINY, "--runs", join(root(), "runs")];
    expect((await experimentOptions([...base, "--method", "crash"])).method).toBe("crash");
    await expect(experimentOptions([...base, "--method", "crash", "--calibration", join(root(), "none.bin")])).rejects.toThrow(
      `--calibration: "${join(root(), "none.bin")}" does not exist`,
    );
  });
});
