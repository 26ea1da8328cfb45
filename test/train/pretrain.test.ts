import { createHash } from "node:crypto";
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../pipelines/pretrain.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { openSafetensors } from "../../src/io/safetensors_file.ts";
import { forwardLogits, lmLoss } from "../../src/model/forward.ts";
import { loadBlockWeights, loadOuterWeights, resolveModel } from "../../src/model/load.ts";
import { tf } from "../../src/tensor/backend.ts";
import { validationWindows } from "../../src/train/batches.ts";

/** A byte-level BPE tokenizer.json with 4 specials and 29 single characters (vocab 33). */
function tinyTokenizer() {
  const specials = ["<s>", "<pad>", "</s>", "<unk>"];
  const vocab = Object.fromEntries([...specials, ..."abcdefghijklmnopqrstuvwxyzĠ.,"].map((t, i) => [t, i]));
  return {
    version: "1.0",
    added_tokens: specials.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, vocab, merges: [] },
  };
}

/** Documents of a repetitive toy language (ids 4..32), each closed by `</s>` (2), as Uint16 LE bytes. */
function tokenFile(documents: number, seed: number): Uint8Array {
  const ids: number[] = [];
  for (let d = 0; d < documents; d++) {
    const start = 4 + ((d * 7 + seed) % 20);
    for (let t = 0; t < 30 + (d % 11); t++) ids.push(start + ((t * 3) % 9));
    ids.push(2);
  }
  const bytes = new Uint8Array(ids.length * 2);
  const view = new DataView(bytes.buffer);
  ids.forEach((id, i) => view.setUint16(2 * i, id, true));
  return bytes;
}

let root: string;
/** The flags of the test runs' model: an --init run may repeat them (they agree with its checkpoint). */
const MODEL_FLAGS = ["--layers", "2", "--hidden", "32", "--heads", "4", "--ffn", "64", "--ctx", "16"];
const flags = () => [...runFlags(), ...MODEL_FLAGS];
/** Data, schedule and run flags of the test runs. */
const runFlags = () => [
  "--data",
  join(root, "data"),
  "--tokenizer",
  join(root, "tok", "tokenizer.json"),
  "--steps",
  "8",
  "--batch",
  "4",
  "--lr",
  "3e-3",
  "--warmup",
  "2",
  "--workers",
  "2",
  "--micro-batch",
  "1",
  "--eval-every",
  "4",
  "--eval-windows",
  "4",
  "--save-every",
  "0",
  "--quiet",
];
const logOf = async (dir: string) =>
  (await readFile(join(dir, "log.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));

/** The loss of the checkpoint in `dir` on the runs' 4 validation windows of 16 tokens, by an independent forward pass. */
async function validationLoss(dir: string): Promise<number> {
  const reader = await openCheckpoint(dir);
  const { arch, cfg } = resolveModel(reader);
  const outer = await loadOuterWeights(reader, arch, cfg);
  const blocks = [await loadBlockWeights(reader, arch, cfg, 0), await loadBlockWeights(reader, arch, cfg, 1)];
  await reader.close();
  const valid = validationWindows(
    new Uint16Array(new Uint8Array(await readFile(join(root, "data", "valid.bin"))).buffer),
    16,
    4,
  );
  const loss = tf.tidy(() => {
    const ids = tf.tensor2d(valid.ids, [valid.batch, valid.ctx], "int32");
    return lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids).dataSync()[0];
  });
  tf.dispose([...outer.values(), ...blocks.flatMap((b) => [...b.values()])]);
  return loss;
}

/** Checks that the runs in `a` and `b` are the same, bit for bit: model, train state, logged numbers. */
async function expectSameRun(a: string, b: string): Promise<void> {
  expect(Buffer.compare(await readFile(join(a, "model.safetensors")), await readFile(join(b, "model.safetensors")))).toBe(0);
  const stateA = await openSafetensors(join(a, "train_state.safetensors"));
  const stateB = await openSafetensors(join(b, "train_state.safetensors"));
  const saved = (f: typeof stateA) => {
    const { step, tokens, samplerState, optimizerStep } = JSON.parse(f.header.metadata["offtune.train_state"]);
    return { step, tokens, samplerState, optimizerStep };
  };
  expect(saved(stateA)).toEqual(saved(stateB));
  for (const e of stateB.header.entries) expect(await stateA.readF32(e.name), e.name).toEqual(await stateB.readF32(e.name));
  await Promise.all([stateA.close(), stateB.close()]);
  const numbers = (log: Record<string, number>[]) =>
    log.map(({ step, loss, lr, grad_norm, val_loss }) => [step, loss, lr, grad_norm, val_loss]);
  expect(numbers(await logOf(a))).toEqual(numbers(await logOf(b)));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-pretrain-"));
  await mkdir(join(root, "data"));
  await mkdir(join(root, "tok"));
  await writeFile(join(root, "tok", "tokenizer.json"), JSON.stringify(tinyTokenizer()));
  await writeFile(join(root, "data", "train.bin"), tokenFile(120, 0));
  await writeFile(join(root, "data", "valid.bin"), tokenFile(12, 3));
  await main(["--out", join(root, "straight"), ...flags()]);
}, 60_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("offtune pretrain", () => {
  it("writes an HF OPT checkpoint whose loss on the validation windows is the logged val_loss", async () => {
    const out = join(root, "straight");
    const config = JSON.parse(await readFile(join(out, "config.json"), "utf8"));
    expect(config).toMatchObject({
      model_type: "opt",
      architectures: ["OPTForCausalLM"],
      num_hidden_layers: 2,
      hidden_size: 32,
      num_attention_heads: 4,
      ffn_dim: 64,
      max_position_embeddings: 16,
      vocab_size: 33,
      eos_token_id: 2,
      pad_token_id: 1,
      torch_dtype: "float32",
    });
    expect(await readFile(join(out, "tokenizer.json"), "utf8")).toBe(JSON.stringify(tinyTokenizer()));
    const log = await logOf(out);
    expect(log.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(log.map((r) => r.val_loss === null)).toEqual([true, true, true, false, true, true, true, false]);
    expect(log[7].tokens).toBe(8 * 4 * 16);
    expect(log[7].val_loss).toBeLessThan(log[3].val_loss);
    expect(log[3].val_loss).toBeLessThan(Math.log(33));
    expect(await validationLoss(out)).toBeCloseTo(log[7].val_loss, 4);
  });

  it("continues bit-exactly: 4 steps + resume + 4 steps equals 8 steps straight", async () => {
    const out = join(root, "halves");
    await main(["--out", out, ...flags(), "--until", "4"]);
    expect((await logOf(out)).length).toBe(4);
    await main(["--out", out, "--resume", "--quiet"]); // --workers 2 and --micro-batch 1 are restored
    const straight = join(root, "straight");
    await expectSameRun(out, straight);
    const state = await openSafetensors(join(straight, "train_state.safetensors"));
    expect(JSON.parse(state.header.metadata["offtune.train_state"])).toMatchObject({ step: 8, optimizerStep: 8, tokens: 512 });
    await state.close();
  }, 60_000);

  it("tracks the model's and its LayerDrop's validation loss, and resumes onto another --train stream", async () => {
    const out = join(root, "phases");
    const deep = flags().map((f, i, all) => (all[i - 1] === "--layers" ? "6" : f));
    await main(["--out", out, ...deep, "--until", "4", "--track-every", "2"]);
    await writeFile(join(root, "data", "train_large.bin"), tokenFile(300, 5));
    await main(["--out", out, "--resume", "--train", join(root, "data", "train_large.bin"), "--track-every", "3", "--quiet"]);
    const log = await logOf(out);
    expect(log.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(log.map((r) => "track_layerdrop_val_loss" in r)).toEqual([false, true, false, true, false, true, false, true]);
    for (const r of log.filter((r) => r.val_loss !== null)) expect(r.track_val_loss).toBeCloseTo(r.val_loss, 6);
    // 6 blocks with 2 + 2 adapter blocks: the LayerDrop keeps blocks 0, 1, 2, 4, 5, a different model.
    for (const r of log.filter((r) => "track_layerdrop_val_loss" in r)) {
      expect(Math.abs(r.track_layerdrop_val_loss - r.track_val_loss)).toBeGreaterThan(1e-4);
    }
    const state = await openSafetensors(join(out, "train_state.safetensors"));
    const { run, trainTokens } = JSON.parse(state.header.metadata["offtune.train_state"]);
    await state.close();
    expect(run.train).toBe(join(root, "data", "train_large.bin"));
    expect(trainTokens).toBe((await readFile(join(root, "data", "train_large.bin"))).length / 2);
    await expect(main(["--out", join(root, "shallow"), ...flags(), "--track-every", "2"])).rejects.toThrow(
      /--track-every needs at least 2 middle blocks besides the 2 \+ 2 adapter blocks; the model has 2 blocks/,
    );
  }, 60_000);

  it("refuses to overwrite a run, and a resume that changes a run-defining flag", async () => {
    const out = join(root, "straight");
    await expect(main(["--out", out, ...flags()])).rejects.toThrow("already holds a run; pass --resume");
    await expect(main(["--out", out, "--resume", "--batch", "8", "--quiet"])).rejects.toThrow(
      "--batch 8 differs from the run being resumed (4)",
    );
    await expect(main(["--out", join(root, "none"), "--resume", "--quiet"])).rejects.toThrow("Cannot resume");
    await expect(main(["--out", join(root, "bad"), ...flags(), "--until", "9"])).rejects.toThrow(
      "--until 9 exceeds --steps 8",
    );
  });

  it("reads the model shape from --config and refuses a config setting it cannot honour", async () => {
    const shape = {
      num_hidden_layers: 1,
      hidden_size: 16,
      num_attention_heads: 2,
      ffn_dim: 24,
      max_position_embeddings: 20,
    };
    await writeFile(
      join(root, "shape.json"),
      JSON.stringify({ ...shape, model_type: "opt", transformers_version: "4.40" }),
    );
    const rest = ["--data", join(root, "data"), "--tokenizer", join(root, "tok", "tokenizer.json"), "--ctx", "16"];
    const run = ["--steps", "1", "--warmup", "0", "--batch", "2", "--workers", "0", "--eval-windows", "2", "--quiet"];
    const out = join(root, "configured");
    await main(["--out", out, "--config", join(root, "shape.json"), ...rest, ...run]);
    expect(JSON.parse(await readFile(join(out, "config.json"), "utf8"))).toMatchObject(shape);
    await writeFile(join(root, "postln.json"), JSON.stringify({ ...shape, do_layer_norm_before: false }));
    await expect(main(["--out", join(root, "postln"), "--config", join(root, "postln.json"), ...rest, ...run]))
      .rejects.toThrow('"do_layer_norm_before" is false; offtune pretrains with true');
  });

  it("stores F16 weights with --fp16, and refuses ids outside the vocabulary and short streams", async () => {
    const out = join(root, "fp16");
    await main(["--out", out, ...flags(), "--steps", "1", "--warmup", "0", "--workers", "0", "--fp16"]);
    const file = await openSafetensors(join(out, "model.safetensors"));
    expect(new Set(file.header.entries.map((e) => e.dtype))).toEqual(new Set(["F16"]));
    await file.close();
    expect(JSON.parse(await readFile(join(out, "config.json"), "utf8")).torch_dtype).toBe("float16");

    // A finished F32 run resumed with --fp16 rewrites its model as F16 (the same weights, rounded) and trains no further.
    const converted = join(root, "fp16-later");
    await main(["--out", converted, ...flags(), "--steps", "1", "--warmup", "0", "--workers", "0"]);
    const read = async (dtype: string) => {
      const f = await openSafetensors(join(converted, "model.safetensors"));
      expect(new Set(f.header.entries.map((e) => e.dtype))).toEqual(new Set([dtype]));
      const values = await f.readF32(f.header.entries[0].name);
      await f.close();
      return values;
    };
    const f32 = await read("F32");
    const logBefore = await readFile(join(converted, "log.jsonl"), "utf8");
    await main(["--out", converted, ...flags(), "--steps", "1", "--warmup", "0", "--workers", "0", "--resume", "--fp16"]);
    const f16 = await read("F16");
    expect(f16.length).toBe(f32.length);
    for (let i = 0; i < f32.length; i++) expect(Math.abs(f16[i] - f32[i])).toBeLessThanOrEqual(Math.abs(f32[i]) * 2 ** -11 + 2 ** -24);
    expect(await readFile(join(converted, "log.jsonl"), "utf8")).toBe(logBefore);
    const ids = new Uint16Array(20).fill(5);
    ids[3] = 40;
    await writeFile(join(root, "data", "valid.bin"), new Uint8Array(ids.buffer));
    await expect(main(["--out", join(root, "badids"), ...flags()])).rejects.toThrow(
      /valid\.bin" holds id 40 at position 3, outside the vocabulary of 33/,
    );
    await writeFile(join(root, "data", "valid.bin"), new Uint8Array(ids.buffer, 0, 20));
    await expect(main(["--out", join(root, "short"), ...flags()])).rejects.toThrow(
      /valid\.bin" holds 10 tokens, fewer than one window of 16/,
    );
    await writeFile(join(root, "data", "valid.bin"), tokenFile(12, 3));
  });
});

describe("offtune pretrain --init", () => {
  /** An F16 checkpoint directory (config, weights, tokenizer; no train state): the straight run stored as F16. */
  let base: string;
  /** 8 steps from `base`'s weights. */
  let continued: string;
  /** The SHA-256 of `base`'s config.json and model.safetensors, as `ModelHandle.sourceHash` hashes them. */
  let baseHash: string;

  beforeAll(async () => {
    const run = join(root, "base-run");
    await cp(join(root, "straight"), run, { recursive: true });
    await main(["--out", run, "--resume", "--fp16", "--quiet"]);
    base = join(root, "base");
    await mkdir(base);
    for (const file of ["config.json", "model.safetensors", "tokenizer.json"]) await copyFile(join(run, file), join(base, file));
    const hash = createHash("sha256");
    for (const file of ["config.json", "model.safetensors"]) hash.update(await readFile(join(base, file)));
    baseHash = hash.digest("hex");
    continued = join(root, "continued");
    await main(["--out", continued, "--init", base, ...flags()]);
  }, 60_000);

  it("starts at step 0 from the checkpoint's weights: the log opens with their loss, which training lowers", async () => {
    const log = await logOf(continued);
    expect(log.map((r) => r.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(log[0]).toMatchObject({ step: 0, tokens: 0, loss: null, lr: null, grad_norm: null, tokens_per_s: null, seconds: 0 });
    expect(log[0].val_loss).toBeCloseTo(await validationLoss(base), 5);
    expect(log[4].val_loss).toBeLessThan(log[0].val_loss);
    expect(log[8].val_loss).toBeLessThan(log[4].val_loss);
    // A schedule of its own: the same warmup and decay as the run the checkpoint came from.
    expect(log.slice(1).map((r) => r.lr)).toEqual((await logOf(join(root, "straight"))).map((r) => r.lr));
    expect(await validationLoss(continued)).toBeCloseTo(log[8].val_loss, 4);

    const state = await openSafetensors(join(continued, "train_state.safetensors"));
    const { run, step, optimizerStep } = JSON.parse(state.header.metadata["offtune.train_state"]);
    await state.close();
    expect({ step, optimizerStep }).toEqual({ step: 8, optimizerStep: 8 });
    expect(run.init).toEqual({ path: base, sourceHash: baseHash });
    const config = JSON.parse(await readFile(join(continued, "config.json"), "utf8"));
    expect(config).toEqual({ ...JSON.parse(await readFile(join(base, "config.json"), "utf8")), torch_dtype: "float32" });
  });

  it("continues bit-exactly: 4 steps + resume + 4 steps equals 8 steps straight", async () => {
    const out = join(root, "continued-halves");
    await main(["--out", out, "--init", base, ...runFlags(), "--until", "4"]);
    expect((await logOf(out)).map((r) => r.step)).toEqual([0, 1, 2, 3, 4]);
    await main(["--out", out, "--resume", "--quiet"]);
    await expectSameRun(out, continued);
    // Repeating --init names the same checkpoint: by content, so a copy elsewhere passes.
    await main(["--out", out, "--resume", "--init", join(root, "base-run"), "--quiet"]);
  }, 60_000);

  it("refuses model flags, a window and a tokenizer that disagree with the checkpoint", async () => {
    const out = join(root, "refused");
    const config = join(base, "config.json");
    await expect(main(["--out", out, "--init", base, ...flags(), "--hidden", "64"])).rejects.toThrow(
      `--hidden 64 disagrees with the --init checkpoint: "${config}" has hidden_size 32`,
    );
    await writeFile(join(root, "three.json"), JSON.stringify({ num_hidden_layers: 3, hidden_size: 32 }));
    await expect(main(["--out", out, "--init", base, ...runFlags(), "--config", join(root, "three.json")])).rejects.toThrow(
      `--config "${join(root, "three.json")}" disagrees with the --init checkpoint: it has num_hidden_layers 3, "${config}" has 2`,
    );
    await expect(main(["--out", out, "--init", base, ...runFlags(), "--ctx", "32"])).rejects.toThrow(
      `Model config "${config}": max_position_embeddings 16 is below --ctx 32`,
    );
    const larger = tinyTokenizer();
    larger.model.vocab = { ...larger.model.vocab, "Ġa": 33 };
    await writeFile(join(root, "tok", "larger.json"), JSON.stringify(larger));
    await expect(main(["--out", out, "--init", base, ...runFlags(), "--tokenizer", join(root, "tok", "larger.json")]))
      .rejects.toThrow(`Tokenizer has 34 ids but the model "${base}" only 33`);
    const swapped = tinyTokenizer();
    swapped.added_tokens = swapped.added_tokens.map((t) => ({ ...t, id: t.id === 1 ? 2 : t.id === 2 ? 1 : t.id }));
    swapped.model.vocab = { ...swapped.model.vocab, "<pad>": 2, "</s>": 1 };
    await writeFile(join(root, "tok", "swapped.json"), JSON.stringify(swapped));
    await expect(main(["--out", out, "--init", base, ...runFlags(), "--tokenizer", join(root, "tok", "swapped.json")]))
      .rejects.toThrow(new RegExp(`Model config "${config}": "(eos|pad)_token_id" is [12]; offtune pretrains with [12]`));
  });

  it("refuses a checkpoint whose weights do not fit its config, and a resume with another --init", async () => {
    const narrow = join(root, "narrow");
    await cp(base, narrow, { recursive: true });
    const config = JSON.parse(await readFile(join(base, "config.json"), "utf8"));
    await writeFile(join(narrow, "config.json"), JSON.stringify({ ...config, ffn_dim: 48 }));
    await expect(main(["--out", join(root, "refused"), "--init", narrow, ...runFlags()])).rejects.toThrow(
      `Cannot load "model.decoder.layers.0.fc1.weight" from "${join(narrow, "model.safetensors")}": ` +
        `config.json implies shape [48, 32] ([out, in]), the file has [64, 32]`,
    );
    const straight = join(root, "straight");
    await expect(main(["--out", continued, "--resume", "--init", straight, "--quiet"])).rejects.toThrow(
      new RegExp(`--init "${straight}" \\(sha256 [0-9a-f]{12}…\\) is not the checkpoint the run being resumed started from \\("${base}", sha256 ${baseHash.slice(0, 12)}…\\)`),
    );
    await expect(main(["--out", straight, "--resume", "--init", base, "--quiet"])).rejects.toThrow(
      `--init "${base}": the run being resumed started from random initialisation, not from a checkpoint`,
    );
  });
});
