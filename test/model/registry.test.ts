/**
 * The registry and config parsing: unknown model types and unsupported or
 * invalid configs fail with errors that name the file/key and the value.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint, saveCheckpoint } from "../../src/io/checkpoint.ts";
import { CheckpointError } from "../../src/io/errors.ts";
import { resolveModel } from "../../src/model/load.ts";
import { opt } from "../../src/model/opt.ts";
import { architectureFor, knownModelTypes, registerArchitecture } from "../../src/model/registry.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-model-registry-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const optRaw = {
  model_type: "opt",
  vocab_size: 50,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  ffn_dim: 32,
  max_position_embeddings: 20,
};

const llamaRaw = {
  model_type: "llama",
  vocab_size: 50,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

describe("architectureFor", () => {
  it("resolves each built-in model_type", () => {
    for (const type of ["opt", "gpt2", "llama", "mistral"]) expect(architectureFor(type).modelTypes).toContain(type);
  });

  it("rejects an unknown model_type naming the config file and the known types", () => {
    expect(() => architectureFor("bert", "/ckpt/config.json")).toThrow(
      'Unknown model_type "bert" in "/ckpt/config.json"; known model types: gpt2, llama, mistral, opt',
    );
  });

  it("reports an unknown model_type of a checkpoint as a CheckpointError on its config.json", async () => {
    const dir = join(root, "bert");
    await saveCheckpoint(dir, { model_type: "bert" }, [{ name: "x", shape: [1], data: new Float32Array(1) }]);
    const reader = await openCheckpoint(dir);
    try {
      let error: unknown;
      try {
        resolveModel(reader);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(CheckpointError);
      expect((error as CheckpointError).file).toBe(join(dir, "config.json"));
      expect((error as Error).message).toMatch(/model_type "bert".*known model types: gpt2, llama, mistral, opt/);
    } finally {
      await reader.close();
    }
  });

  it("serves a registered architecture without touching the built-ins", () => {
    const custom = { ...opt, modelTypes: ["opt-custom"] };
    registerArchitecture(custom);
    expect(architectureFor("opt-custom")).toBe(custom);
    expect(knownModelTypes()).toContain("opt-custom");
    expect(architectureFor("opt")).toBe(opt);
  });
});

describe("parseConfig", () => {
  it("reads OPT's keys and defaults (tied head, LayerNorm eps 1e-5)", () => {
    const cfg = opt.parseConfig(optRaw);
    expect(cfg).toMatchObject({ hidden: 16, heads: 4, kvHeads: 4, intermediate: 32, tiedHead: true, normEps: 1e-5 });
    expect(opt.outerShapes(cfg).get("model.decoder.embed_positions.weight")).toEqual([22, 16]);
  });

  it("names a missing or mistyped key", () => {
    const { hidden_size: _, ...missing } = optRaw;
    expect(() => opt.parseConfig(missing)).toThrow('Invalid config.json: missing "hidden_size"');
    expect(() => opt.parseConfig({ ...optRaw, ffn_dim: "32" })).toThrow(
      'Invalid config.json: "ffn_dim" must be a positive integer, found "32"',
    );
    expect(() => opt.parseConfig({ ...optRaw, num_attention_heads: 5 })).toThrow(/not divisible by 5/);
  });

  it("rejects OPT's project_in/project_out variant and other activations", () => {
    expect(() => opt.parseConfig({ ...optRaw, word_embed_proj_dim: 8 })).toThrow(
      /word_embed_proj_dim 8 ≠ hidden_size 16/,
    );
    expect(() => opt.parseConfig({ ...optRaw, activation_function: "gelu" })).toThrow(
      'Unsupported config.json: "activation_function" is "gelu"; supported: "relu"',
    );
  });

  it("drops OPT's final norm for post-LN models", () => {
    const names = (raw: Record<string, unknown>) => [...opt.outerShapes(opt.parseConfig(raw)).keys()];
    expect(names(optRaw)).toContain("model.decoder.final_layer_norm.weight");
    expect(names({ ...optRaw, do_layer_norm_before: false })).not.toContain("model.decoder.final_layer_norm.weight");
  });

  it("reads LLaMA's grouped-query shapes and untied head", () => {
    const llama = architectureFor("llama");
    const cfg = llama.parseConfig(llamaRaw);
    expect(cfg.kvHeads).toBe(2);
    expect(cfg.tiedHead).toBe(false);
    expect(llama.blockShapes(cfg).get("self_attn.k_proj.weight")).toEqual([16, 8]);
    expect(llama.outerShapes(cfg).get("lm_head.weight")).toEqual([16, 50]);
    expect(llama.storedTransposed("self_attn.k_proj.weight")).toBe(true);
    expect(llama.storedTransposed("input_layernorm.weight")).toBe(false);
  });

  it("rejects LLaMA settings whose math it does not implement", () => {
    const llama = architectureFor("llama");
    expect(() => llama.parseConfig({ ...llamaRaw, rope_scaling: { rope_type: "llama3", factor: 8 } })).toThrow(
      /"rope_scaling".*not supported/,
    );
    expect(() => llama.parseConfig({ ...llamaRaw, num_key_value_heads: 3 })).toThrow(/not a multiple/);
    expect(() => llama.parseConfig({ ...llamaRaw, head_dim: 8 })).toThrow(/"head_dim" 8 differs/);
  });
});
