// The OT LayerDrop baseline through the verbs on fixtures/small:
// build-emulator --method layerdrop → tune → eval with the adapter → plug-in
// into the original, and the flag checks of build-emulator and experiment.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as evalVerb } from "../../pipelines/eval.ts";
import type { EvalReport } from "../../mod.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { readShardFile } from "../../src/io/shard_reader.ts";
import { openModel } from "../../src/model/model_handle.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";

const SMALL = "fixtures/small"; // OPT, 12 blocks, split 2+2

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-layerdrop-cli-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Block `i`'s weight `name` of `handle`, as plain numbers. */
async function weightOf(handle: ModelHandle, i: number, name: string): Promise<Float32Array> {
  const weights = await handle.loadBlock(i);
  const data = weights.get(name)!.dataSync() as Float32Array;
  tf.dispose([...weights.values()]);
  return data;
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

describe("build-emulator --method", () => {
  test("layerdrop needs no --calibration; gradot still does; other methods and bad ratios are refused", async () => {
    const out = join(root, "flags");
    await expect(buildEmulator(["--model", SMALL, "--out", out, "--quiet"])).rejects.toThrow(
      "--calibration is required for --method gradot (see offtune build-emulator --help)",
    );
    await expect(buildEmulator(["--method", "prune", "--model", SMALL, "--out", out])).rejects.toThrow(
      `--method expects gradot, layerdrop, crash, ot-distill or scaleot, got "prune"`,
    );
    for (const ratio of ["0", "1.5"]) {
      await expect(buildEmulator(["--method", "layerdrop", "--model", SMALL, "--out", out, "--ratio", ratio, "--quiet"]))
        .rejects.toThrow(`--ratio expects a number in (0, 1], got "${ratio}"`);
    }
    expect(await exists(out)).toBe(false);
  });
});

describe("tune through a LayerDrop emulator, then plug in", () => {
  const emulator = () => join(root, "emulator");
  const adapter = () => join(root, "adapter");

  test("the adapter tuned on the emulator holds the original bottom and top blocks and evaluates there", async () => {
    expect(await buildEmulator(["--method", "layerdrop", "--model", SMALL, "--out", emulator(), "--ratio", "0.5", "--quiet"])).toBe(0);
    const built = await readManifest(emulator());
    expect([built.method, built.blockIndices]).toEqual(["ot-layerdrop", [0, 1, 2, 4, 6, 8, 10, 11]]);

    expect(await tuneVerb([
      "--emulator", emulator(), "--task", "lastword_cloze", "--limit", "4", "--out", adapter(),
      "--epochs", "1", "--batch", "2", "--lr", "1e-2", "--quiet",
    ])).toBe(0);
    const manifest = await readManifest(adapter());
    expect(manifest.kind).toBe("adapter");
    expect(manifest.shards.map((s) => s.block)).toEqual([0, 1, 10, 11]);
    expect(manifest.split).toEqual({ bottom: 2, top: 2 });
    expect(manifest.extra).toMatchObject({ step: 2, finished: true, tunedOn: emulator() });

    const json = join(root, "emulator_ft.json");
    expect(await evalVerb([
      "--model", emulator(), "--adapter", adapter(), "--tasks", "lastword_cloze", "--limit", "4", "--json", json, "--quiet",
    ])).toBe(0);
    const report = JSON.parse(await readFile(json, "utf8")) as EvalReport;
    expect(report.tasks.lastword_cloze.n).toBe(4);
  });

  test("plug-in accepts it: the original's adapter blocks take the tuned weights, every middle block stays", async () => {
    const plugged = join(root, "plugged");
    expect(await plugIn(["--model", SMALL, "--adapter", adapter(), "--out", plugged, "--quiet"])).toBe(0);
    const manifest = await readManifest(adapter());
    const base = await openModel(SMALL);
    const result = await openModel(plugged);
    try {
      for (const entry of manifest.shards) {
        const { tensors } = await readShardFile(join(adapter(), entry.file));
        const tuned = tensors.find((t) => t.name === "fc1.weight")!.data;
        const block = entry.block as number;
        expect(same(await weightOf(result, block, "fc1.weight"), tuned), `block ${block} is the adapter's`).toBe(true);
        expect(same(tuned, await weightOf(base, block, "fc1.weight")), `block ${block} was tuned`).toBe(false);
      }
      for (let i = 2; i < 10; i++) { // kept (2, 4, 6, 8) and dropped (3, 5, 7, 9) middle blocks alike
        const [before, after] = [await base.loadBlock(i), await result.loadBlock(i)];
        for (const [name, t] of before) {
          expect(same(after.get(name)!.dataSync() as Float32Array, t.dataSync() as Float32Array), `block ${i} ${name}`).toBe(true);
        }
        tf.dispose([...before.values(), ...after.values()]);
      }
    } finally {
      await base.close();
      await result.close();
    }
  });
});

describe("experiment --method", () => {
  test("takes layerdrop, defaults to gradot and refuses anything else", async () => {
    const base = ["--model", SMALL, "--runs", join(root, "runs")];
    expect((await experimentOptions([...base, "--method", "layerdrop"])).method).toBe("layerdrop");
    expect((await experimentOptions(base)).method).toBe("gradot");
    await expect(experimentOptions([...base, "--method", "prune"])).rejects.toThrow(`--method expects gradot, layerdrop, crash, ot-distill or scaleot, got "prune"`);
  });
});
