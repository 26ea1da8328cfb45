/**
 * A config.json that disagrees with the weights beside it is an error when
 * the checkpoint is opened (docs/GUARANTEES.md "What is verified"), for
 * `openModel` (every verb) and `inspect` alike: more blocks in the file than
 * the config declares, fewer, or other widths.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openModel } from "../../src/model/model_handle.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";
import { main as evalVerb } from "../../pipelines/eval.ts";
import { inspectCheckpoint } from "../../mod.ts";
import { fileError } from "../io/errors.ts";

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-config-weights-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const SHAPE = { layers: 4, hidden: 16, heads: 2, ffn: 32, maxPositions: 16, vocabSize: 40, bosId: 2, eosId: 2, padId: 1 };

/** A 4-block OPT checkpoint whose config.json is then edited by `edit`. */
async function editedConfig(label: string, edit: (config: Record<string, unknown>) => void): Promise<string> {
  const dir = join(root, label);
  await writeRandomOpt(dir, SHAPE, { dtype: "F32" });
  const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
  edit(config);
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

/** openModel and inspect both reject `dir` with exactly `message`, naming `file`; `eval` stops with it too. */
async function bothRefuse(dir: string, message: string, file: string): Promise<void> {
  await expect(openModel(dir, { split: { bottom: 1, top: 1 } })).rejects.toThrow(fileError(message, file));
  await expect(inspectCheckpoint(dir)).rejects.toThrow(fileError(message, file));
  await expect(evalVerb(["--model", dir, "--tasks", "lastword_cloze", "--limit", "1", "--quiet"])).rejects.toThrow(
    fileError(message, file),
  );
}

describe("a config that disagrees with its checkpoint", () => {
  it("num_hidden_layers 3 with 4 blocks stored names the block the config leaves out", async () => {
    const dir = await editedConfig("three-of-four", (c) => (c.num_hidden_layers = 3));
    const config = join(dir, "config.json");
    await bothRefuse(
      dir,
      `Checkpoint "${dir}" disagrees with "${config}": the config declares 3 blocks (0..2), but ` +
        `"${join(dir, "model.safetensors")}" holds block 3 (e.g. tensor "model.decoder.layers.3.self_attn.q_proj.weight")`,
      config,
    );
  });

  it("num_hidden_layers 2 with 4 blocks stored lists every block beyond it", async () => {
    const dir = await editedConfig("two-of-four", (c) => (c.num_hidden_layers = 2));
    await expect(openModel(dir, { split: { bottom: 0, top: 0 } })).rejects.toThrow(/holds blocks 2, 3 \(e\.g\. tensor/);
  });

  it("num_hidden_layers 5 with 4 blocks stored names the missing block", async () => {
    const dir = await editedConfig("five-of-four", (c) => (c.num_hidden_layers = 5));
    const config = join(dir, "config.json");
    await bothRefuse(
      dir,
      `Checkpoint "${dir}" disagrees with "${config}": the config declares 5 blocks (0..4), but the weights hold no tensor of block 4`,
      config,
    );
  });

  it("a hidden_size the weights do not have names the file, tensor and both shapes", async () => {
    const dir = await editedConfig("wider", (c) => {
      c.hidden_size = 32;
      c.word_embed_proj_dim = 32;
    });
    const file = join(dir, "model.safetensors");
    await bothRefuse(
      dir,
      `Cannot load "model.decoder.embed_tokens.weight" from "${file}": config.json implies shape [40, 32], the file has [40, 16]`,
      file,
    );
  });

  it("an unedited checkpoint opens and inspect counts every block's weights in its block", async () => {
    const dir = await editedConfig("unedited", () => {});
    const model = await openModel(dir, { split: { bottom: 1, top: 1 } });
    expect(model.cfg.layers).toBe(4);
    await model.close();
    const summary = await inspectCheckpoint(dir);
    expect(summary.parameters.perBlock).toHaveLength(4);
    const embeddings = 40 * 16 + (16 + 2) * 16; // tokens, positions (OPT offset 2)
    const finalNorm = 2 * 16;
    expect(summary.parameters.outer).toBe(embeddings + finalNorm);
  });
});
