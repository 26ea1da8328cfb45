// Output safety (docs/GUARANTEES.md "Outputs"): the verbs never write over a
// directory that is not theirs, nor over an input; --force replaces
// atomically; a new tune runs beside a finished adapter; unfinished adapters
// are refused; write errors name the path; flags are range-checked; unknown
// verbs never reach Object.prototype. Every refusal is checked with its
// exact message and with checksums of the user's files before and after.
import { createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as evalVerb } from "../../pipelines/eval.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { main as fullFt } from "../../pipelines/full_ft.ts";
import { run as offtune } from "../../pipelines/offtune.ts";
import { main as plugIn } from "../../pipelines/plug_in.ts";
import { main as pretrain } from "../../pipelines/pretrain.ts";
import { main as sweepGradot } from "../../pipelines/sweep_gradot.ts";
import { main as tuneVerb } from "../../pipelines/tune.ts";
import { padIdOf, readTrainItems, runExperiment, tokenizerFor, writeHfModel } from "../../mod.ts";
import { writeFileAtomicSync } from "../../src/io/atomic.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openSource } from "../../src/model/model_source.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { goldExamples } from "../../src/train/mc_batches.ts";
import { partialDirOf, tuneAdapter, type TuneAdapterSummary } from "../../src/train/tune.ts";
import { TUNE_STATE_FILE } from "../../src/train/tune_package.ts";

let root: string;
let model: string; // a private copy of fixtures/tiny (OPT, 4 blocks, width 64)
let emulator: string; // its LayerDrop emulator, split 1+1
let adapter: string; // a finished adapter tuned through it (seed 0)

/** The tune flags of every run here: 8 items, batches of 4, 2 epochs = 4 steps. */
const TUNE = ["--task", "lastword_cloze", "--limit", "8", "--batch", "4", "--epochs", "2", "--quiet"];

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-output-safety-"));
  model = join(root, "model");
  await cp("fixtures/tiny", model, { recursive: true });
  emulator = join(root, "emulator");
  expect(await buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", emulator, "--quiet"])).toBe(0);
  adapter = join(root, "adapter");
  expect(await tuneVerb(["--emulator", emulator, "--out", adapter, ...TUNE])).toBe(0);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Every file under `dir` (recursively) with its SHA-256, sorted: equal before and after means untouched. */
async function digest(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out.push(`${relative(dir, path)} ${createHash("sha256").update(await readFile(path)).digest("hex")}`);
    }
  };
  await walk(dir);
  return out;
}

/** The digest lines of the block shards (a manifest differs by its `createdAt`). */
const blockShards = (lines: string[]) => lines.filter((l) => l.startsWith("block-"));

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Entries beside `dir` left by a directory transaction (`<name>.tmp-*`, `<name>.old-*`). */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dirname(dir))).filter((n) => n.startsWith(`${basename(dir)}.tmp-`) || n.startsWith(`${basename(dir)}.old-`));
}

/** A directory of the user's own files (not any verb's output). */
async function userDir(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(join(dir, "sub"), { recursive: true });
  await writeFile(join(dir, "notes.txt"), "mine\n");
  await writeFile(join(dir, "sub", "data.bin"), new Uint8Array([1, 2, 3]));
  return dir;
}

/**
 * Tunes through the emulator as `offtune tune ${TUNE} --seed <seed>` would
 * (with `--force` when `force`), stopping after `stopAfter` steps.
 */
async function tuneStopped(out: string, seed: number, stopAfter: number, force = false): Promise<TuneAdapterSummary> {
  const handle = await openSource(emulator);
  try {
    const { tokenizer } = await tokenizerFor(emulator, handle.cfg, undefined, true);
    let steps = 0;
    return await tuneAdapter(handle, {
      examples: goldExamples(await readTrainItems("lastword_cloze", 8), tokenizer),
      padId: padIdOf(handle.cfg),
      out,
      hyper: { epochs: 2, batch: 4, seed },
      shouldStop: () => ++steps === stopAfter,
      force,
    });
  } finally {
    await handle.close();
  }
}

const REPLACE_HINT = "choose another directory, or pass --force to replace it (the old one is kept until the new one is complete)";

describe("--out over a directory that is not the verb's", () => {
  test("build-emulator, tune, plug-in, full-ft, pretrain and experiment refuse it and touch nothing", async () => {
    const mine = await userDir("mine");
    const before = await digest(mine);
    const holds = `Refusing to write to --out "${mine}": it holds other files ("notes.txt", "sub")`;
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", mine, "--quiet"]))
      .rejects.toThrow(`${holds}, and build-emulator only replaces an emulator package; ${REPLACE_HINT}`);
    await expect(tuneVerb(["--emulator", emulator, "--out", mine, ...TUNE]))
      .rejects.toThrow(`${holds}, and tune only replaces an adapter package; ${REPLACE_HINT}`);
    await expect(plugIn(["--model", model, "--adapter", adapter, "--split", "1,1", "--out", mine, "--quiet"]))
      .rejects.toThrow(`${holds}, and plug-in only replaces a checkpoint written by offtune plug-in; ${REPLACE_HINT}`);
    await expect(fullFt(["--model", model, "--out", mine, ...TUNE]))
      .rejects.toThrow(`${holds}, and full-ft only replaces a checkpoint written by offtune full-ft; ${REPLACE_HINT}`);
    await expect(pretrain(["--out", mine, "--quiet"])).rejects.toThrow(
      `${holds}, and pretrain only writes over a pretraining run (train_state.safetensors); choose another directory`,
    );
    await expect(runExperiment(await experimentOptions(["--model", model, "--runs", mine, "--quiet"]))).rejects.toThrow(
      `Refusing to write to --runs "${mine}": it holds other files ("notes.txt", "sub"), and experiment only writes over ` +
        `an experiment runs directory (with _work); choose another directory`,
    );
    expect(await digest(mine)).toEqual(before);
    expect(await leftovers(mine)).toEqual([]);
  });

  test("each verb rewrites its own kind of output without --force, and no other kind", async () => {
    const emulatorAgain = join(root, "emulator-again");
    const args = ["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", emulatorAgain, "--quiet"];
    expect(await buildEmulator(args)).toBe(0);
    expect(await buildEmulator(args)).toBe(0);
    const plugged = join(root, "plugged");
    const plugArgs = ["--model", model, "--adapter", adapter, "--split", "1,1", "--out", plugged, "--quiet"];
    expect(await plugIn(plugArgs)).toBe(0);
    expect(await plugIn(plugArgs)).toBe(0);
    expect(JSON.parse(await readFile(join(plugged, "offtune_output.json"), "utf8"))).toEqual({ writtenBy: "plug-in" });

    const [pluggedBefore, adapterBefore] = [await digest(plugged), await digest(adapter)];
    await expect(fullFt(["--model", model, "--out", plugged, ...TUNE])).rejects.toThrow(
      `Refusing to write to --out "${plugged}": it holds a checkpoint written by offtune plug-in, and full-ft only replaces ` +
        `a checkpoint written by offtune full-ft; ${REPLACE_HINT}`,
    );
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", adapter, "--quiet"]))
      .rejects.toThrow(
        `Refusing to write to --out "${adapter}": it holds an adapter package, and build-emulator only replaces an emulator package; ${REPLACE_HINT}`,
      );
    const original = join(root, "original");
    await cp(model, original, { recursive: true });
    const originalBefore = await digest(original);
    await expect(tuneVerb(["--emulator", emulator, "--out", original, ...TUNE])).rejects.toThrow(
      `Refusing to write to --out "${original}": it holds a model checkpoint ("config.json", "log.jsonl", "loss_curve.svg", … ` +
        `(6 entries)), and tune only replaces an adapter package; ${REPLACE_HINT}`,
    );
    expect([await digest(plugged), await digest(adapter), await digest(original)]).toEqual([pluggedBefore, adapterBefore, originalBefore]);
  });
});

describe("--out and the inputs", () => {
  test("--out equal to, inside or around an input is refused even with --force; a symlink to the model is the model", async () => {
    const [modelBefore, emulatorBefore] = [await digest(model), await digest(emulator)];
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", model, "--force", "--quiet"]))
      .rejects.toThrow(`Refusing to write to --out "${model}": it is the --model input`);
    await expect(plugIn(["--model", model, "--adapter", adapter, "--split", "1,1", "--out", model, "--force", "--quiet"]))
      .rejects.toThrow(`Refusing to write to --out "${model}": it is the --model input`);
    const inside = join(model, "tuned");
    await expect(fullFt(["--model", model, "--out", inside, "--force", ...TUNE]))
      .rejects.toThrow(`Refusing to write to --out "${inside}": it lies inside the --model input "${model}"`);
    await expect(tuneVerb(["--emulator", emulator, "--out", emulator, "--force", ...TUNE]))
      .rejects.toThrow(`Refusing to write to --out "${emulator}": it is the --emulator input`);
    const link = join(root, "link-to-model");
    await symlink(model, link);
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", link, "--force", "--quiet"]))
      .rejects.toThrow(`Refusing to write to --out "${link}": it is the --model input`);

    const data = join(root, "data");
    await mkdir(data);
    const items = join(data, "items.jsonl");
    await writeFile(items, (await readFile("fixtures/data/tasks/lastword_cloze/train.jsonl", "utf8")).split("\n").slice(0, 4).join("\n"));
    await expect(tuneVerb(["--emulator", emulator, "--task", items, "--out", data, "--force", "--quiet"]))
      .rejects.toThrow(`Refusing to write to --out "${data}": it contains the --task input "${items}"`);
    expect([await digest(model), await digest(emulator)]).toEqual([modelBefore, emulatorBefore]);
    expect(await exists(inside)).toBe(false);
  });
});

describe("--force", () => {
  test("replaces a foreign directory with the new package, leaving nothing of the old one and no temporaries", async () => {
    const mine = await userDir("forced");
    expect(await buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", mine, "--force", "--quiet"]))
      .toBe(0);
    expect((await readManifest(mine)).kind).toBe("emulator");
    expect(await exists(join(mine, "notes.txt"))).toBe(false);
    expect(blockShards(await digest(mine))).toEqual(blockShards(await digest(emulator)));
    expect(await leftovers(mine)).toEqual([]);
  });

  test("keeps the old directory whole when the new one fails before it is complete", async () => {
    const mine = await userDir("kept");
    const before = await digest(mine);
    const handle = await openModel(model, { split: { bottom: 1, top: 1 } });
    try {
      await expect(writeHfModel(mine, {
        model: handle,
        block: (i) => (i < 2 ? handle.loadBlock(i) : Promise.reject(new Error("block 2 failed"))),
        tokenizer: join(model, "tokenizer.json"),
      }, { writtenBy: "plug-in" })).rejects.toThrow("block 2 failed");
    } finally {
      await handle.close();
    }
    expect(await digest(mine)).toEqual(before);
    expect(await leftovers(mine)).toEqual([]);
  });
});

describe("tune beside a finished adapter", () => {
  test("the new run's checkpoints go to <out>.partial; the finished adapter is replaced only when the new one finishes", async () => {
    const out = join(root, "adapter-beside");
    await cp(adapter, out, { recursive: true });
    const finished = await digest(out);
    const partial = partialDirOf(out);

    const stopped = await tuneStopped(out, 1, 2);
    expect(stopped).toMatchObject({ stopped: true, step: 2, dir: partial });
    expect(await digest(out)).toEqual(finished);
    expect(await readdir(partial)).toContain(TUNE_STATE_FILE);
    expect((await readManifest(partial)).extra).toMatchObject({ finished: false, step: 2, totalSteps: 4 });

    await expect(tuneVerb(["--emulator", emulator, "--out", out, "--seed", "1", ...TUNE])).rejects.toThrow(
      `"${partial}" holds an unfinished tuning run; resume it (--resume), pass --force to start over, or choose another output directory`,
    );
    expect(await digest(out)).toEqual(finished);

    expect(await tuneVerb(["--emulator", emulator, "--out", out, "--seed", "1", "--resume", ...TUNE])).toBe(0);
    expect(await exists(partial)).toBe(false);
    expect((await readManifest(out)).extra).toMatchObject({ finished: true, step: 4 });
    const straight = join(root, "adapter-seed1");
    expect(await tuneVerb(["--emulator", emulator, "--out", straight, "--seed", "1", ...TUNE])).toBe(0);
    expect(blockShards(await digest(out))).toEqual(blockShards(await digest(straight)));
    expect(blockShards(await digest(out))).not.toEqual(blockShards(finished));
  });

  test("--force starts over, discarding the unfinished run beside; the finished adapter still waits for the end", async () => {
    const out = join(root, "adapter-forced");
    await cp(adapter, out, { recursive: true });
    const finished = await digest(out);
    await tuneStopped(out, 1, 2);
    expect(await tuneStopped(out, 2, 3, true)).toMatchObject({ stopped: true, step: 3, dir: partialDirOf(out) });
    expect((await readManifest(partialDirOf(out))).settings).toMatchObject({ seed: 2 });
    expect(await digest(out)).toEqual(finished);
    expect(await tuneVerb(["--emulator", emulator, "--out", out, "--seed", "2", "--resume", ...TUNE])).toBe(0);
    expect((await readManifest(out)).settings).toMatchObject({ seed: 2 });
    expect(await exists(partialDirOf(out))).toBe(false);
  });
});

describe("unfinished adapters", () => {
  test("eval --adapter and plug-in refuse an epoch checkpoint, naming its step, unless --allow-unfinished", async () => {
    const unfinished = join(root, "unfinished");
    expect(await tuneStopped(unfinished, 0, 2)).toMatchObject({ stopped: true, dir: unfinished });
    const before = await digest(unfinished);
    const refusal = `Adapter "${unfinished}" at step 2 of 4 is unfinished; finish it with offtune tune --resume, ` +
      `or pass --allow-unfinished to use it anyway`;
    const evalArgs = ["--model", emulator, "--adapter", unfinished, "--tasks", "lastword_cloze", "--limit", "2", "--quiet"];
    await expect(evalVerb(evalArgs)).rejects.toThrow(refusal);
    const plugged = join(root, "plugged-unfinished");
    const plugArgs = ["--model", model, "--adapter", unfinished, "--split", "1,1", "--out", plugged, "--quiet"];
    await expect(plugIn(plugArgs)).rejects.toThrow(refusal);
    expect(await exists(plugged)).toBe(false);

    expect(await evalVerb([...evalArgs, "--allow-unfinished"])).toBe(0);
    expect(await plugIn([...plugArgs, "--allow-unfinished"])).toBe(0);
    expect((await readdir(plugged))).toContain("model.safetensors");
    expect(await digest(unfinished)).toEqual(before);
    expect(await evalVerb(["--model", emulator, "--adapter", adapter, "--tasks", "lastword_cloze", "--limit", "2", "--quiet"])).toBe(0);
  });
});

describe("write errors name the path", () => {
  test("a full disk (ENOSPC) while writing a file", () => {
    const path = join(root, "full", "shard.arrow");
    const full = openSync("/dev/full", "w"); // every write fails with ENOSPC
    try {
      expect(() => writeFileAtomicSync(path, () => writeSync(full, new Uint8Array(1))))
        .toThrow(`Cannot write "${path}": no space left on device (ENOSPC)`);
    } finally {
      closeSync(full);
    }
  });

  test("a directory where a file goes (EISDIR), and a file where a directory goes (EEXIST)", async () => {
    const dir = join(root, "results.json");
    await mkdir(dir);
    await expect(evalVerb(["--model", model, "--tasks", "lastword_cloze", "--limit", "2", "--json", dir, "--quiet"]))
      .rejects.toThrow(`Cannot write "${dir}": a directory is in the way (EISDIR)`);
    expect(await readdir(dir)).toEqual([]);
    const file = join(root, "a-file");
    await writeFile(file, "mine\n");
    const out = join(file, "emulator");
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", out, "--quiet"]))
      .rejects.toThrow(`Cannot write "${out}": a file is in the way (EEXIST)`);
    expect(await readFile(file, "utf8")).toBe("mine\n");
    await expect(buildEmulator(["--method", "layerdrop", "--model", model, "--split", "1,1", "--out", file, "--force", "--quiet"]))
      .rejects.toThrow(`Refusing to write to --out "${file}": it is a file, not a directory; remove it or choose another directory`);
  });
});

describe("flags are range-checked before any work", () => {
  test("λ ≥ 0, ratio in (0, 1], fractions in [0, 1], positive counts; LoRA rank up to the layer width", async () => {
    const out = join(root, "never");
    const gradot = ["--model", model, "--calibration", "fixtures/data/pretrain/calibration.bin", "--split", "1,1", "--out", out, "--quiet"];
    const cases: Array<[string[], string]> = [
      [["--lambda-attn=-5"], `--lambda-attn expects a number ≥ 0, got "-5"`],
      [["--lambda-mlp=-0.1"], `--lambda-mlp expects a number ≥ 0, got "-0.1"`],
      [["--ratio", "0"], `--ratio expects a number in (0, 1], got "0"`],
      [["--ratio", "1.5"], `--ratio expects a number in (0, 1], got "1.5"`],
      [["--attn-share", "2"], `--attn-share expects a number in [0, 1], got "2"`],
      [["--sequences", "0"], `--sequences expects a positive integer, got "0"`],
      [["--length", "2.5"], `--length expects a positive integer, got "2.5"`],
    ];
    for (const [flags, message] of cases) await expect(buildEmulator([...gradot, ...flags])).rejects.toThrow(message);

    const tune = ["--emulator", emulator, "--out", out, ...TUNE];
    await expect(tuneVerb([...tune, "--lora", "--lora-rank", "100000"]))
      .rejects.toThrow(`--lora-rank 100000 exceeds the layer width of "${emulator}" (64)`);
    await expect(tuneVerb([...tune, "--lora", "--lora-rank", "0"])).rejects.toThrow(`--lora-rank expects a positive integer, got "0"`);
    await expect(tuneVerb([...tune, "--lora", "--lora-alpha", "0"])).rejects.toThrow(`--lora-alpha expects a number > 0, got "0"`);
    await expect(tuneVerb([...tune, "--epochs", "0"])).rejects.toThrow(`--epochs expects a positive integer, got "0"`);
    await expect(tuneVerb([...tune, "--lr=-1e-3"])).rejects.toThrow(`--lr expects a number > 0, got "-1e-3"`);
    await expect(experimentOptions(["--model", model, "--runs", out, "--lambda-attn=-5"]))
      .rejects.toThrow(`--lambda-attn expects a number ≥ 0, got "-5"`);
    await expect(experimentOptions(["--model", model, "--runs", out, "--ratio", "2"])).rejects.toThrow(`--ratio expects a number in (0, 1], got "2"`);
    await expect(sweepGradot(["--model", model, "--lambdas", "1,-1"])).rejects.toThrow(`--lambdas expects a number ≥ 0, got "-1"`);
    expect(await exists(out)).toBe(false);
    expect(await tuneVerb(["--emulator", emulator, "--out", join(root, "lora-64"), "--lora", "--lora-rank", "64", ...TUNE])).toBe(0);
  });
});

describe("unknown verbs", () => {
  test("Object.prototype's names are unknown verbs, not a crash", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      for (const name of ["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf"]) {
        errors.mockClear();
        expect(await offtune([name])).toBe(2);
        expect(String(errors.mock.calls[0][0])).toMatch(new RegExp(`^offtune: unknown verb "${name}"\\n`));
      }
    } finally {
      errors.mockRestore();
    }
  });
});
