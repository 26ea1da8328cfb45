/**
 * OPT (the seeds' model, docs/METHOD.md §1), as Hugging Face's `modeling_opt.py`:
 * learned positions offset by 2, pre-LN blocks (post-LN when
 * `do_layer_norm_before` is false, then without a final norm), ReLU MLP
 * `fc1`/`fc2`, biases everywhere, queries scaled by `head_dim^-0.5` before
 * `q kᵀ`, tied LM head unless `tie_word_embeddings` is false.
 *
 * Rejected: `word_embed_proj_dim` ≠ `hidden_size` (OPT-350m's project_in/out),
 * `enable_bias: false`, `layer_norm_elementwise_affine: false`, activations
 * other than ReLU.
 *
 * Positions are the token index + 2: the HF rule `cumsum(mask) · mask - 1 + 2`
 * for an all-ones attention mask (offtune batches are unpadded).
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import {
  configBool,
  configChoice,
  configInt,
  headDim,
  requireSupported,
} from "./config_fields.ts";
import { causalAttention, embedWithPositions, linear, lmHead, namedLayerNorm, splitHeads, vocabularyNames } from "./layers.ts";
import { addLayerNormShapes, linearShapes, LM_HEAD_WEIGHT, nnLinearTransposed } from "./shapes.ts";
import type { Architecture, BlockOptions, LinearSpec, ModelConfig, WeightMap } from "./types.ts";

/** OPTLearnedPositionalEmbedding's offset: position p reads row p + 2. */
const POSITION_OFFSET = 2;
/** nn.LayerNorm's default epsilon (OPT's config has none). */
const LAYER_NORM_EPS = 1e-5;

const EMBED = "model.decoder.embed_tokens.weight";
const POSITIONS = "model.decoder.embed_positions.weight";
const FINAL_NORM = "model.decoder.final_layer_norm";
const LINEAR_NAMES = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.out_proj",
  "fc1",
  "fc2",
];

/** Pre-LN (`do_layer_norm_before`, default true) or post-LN (OPT-350m style). */
function preLayerNorm(cfg: ModelConfig): boolean {
  return configBool(cfg.raw, "do_layer_norm_before", true);
}

/** HF keeps `model.decoder.final_layer_norm` only for pre-LN models not flagged `_remove_final_layer_norm`. */
function hasFinalNorm(cfg: ModelConfig): boolean {
  return preLayerNorm(cfg) && !configBool(cfg.raw, "_remove_final_layer_norm", false);
}

function parseConfig(raw: Record<string, unknown>): ModelConfig {
  const hidden = configInt(raw, "hidden_size");
  const heads = configInt(raw, "num_attention_heads");
  headDim(hidden, heads);
  const projDim = configInt(raw, "word_embed_proj_dim", hidden);
  requireSupported(
    projDim === hidden,
    `OPT with word_embed_proj_dim ${projDim} ≠ hidden_size ${hidden} (project_in/project_out) is not supported`,
  );
  requireSupported(configBool(raw, "enable_bias", true), `OPT with "enable_bias": false is not supported`);
  requireSupported(
    configBool(raw, "layer_norm_elementwise_affine", true),
    `OPT with "layer_norm_elementwise_affine": false is not supported`,
  );
  configChoice(raw, "activation_function", "relu", ["relu"]);
  // Flags read again by block/head: check their types once, here.
  configBool(raw, "do_layer_norm_before", true);
  configBool(raw, "_remove_final_layer_norm", false);
  return {
    modelType: "opt",
    vocabSize: configInt(raw, "vocab_size"),
    hidden,
    layers: configInt(raw, "num_hidden_layers"),
    heads,
    kvHeads: heads,
    intermediate: configInt(raw, "ffn_dim"),
    maxPositions: configInt(raw, "max_position_embeddings"),
    normEps: LAYER_NORM_EPS,
    tiedHead: configBool(raw, "tie_word_embeddings", true),
    raw,
  };
}

function linears(cfg: ModelConfig): LinearSpec[] {
  const d = cfg.hidden;
  const attn = (name: string, role: LinearSpec["role"]): LinearSpec => ({
    name: `self_attn.${name}`,
    role,
    inFeatures: d,
    outFeatures: d,
    hasBias: true,
  });
  return [
    attn("q_proj", "attn.q"),
    attn("k_proj", "attn.k"),
    attn("v_proj", "attn.v"),
    attn("out_proj", "attn.out"),
    { name: "fc1", role: "mlp.in", inFeatures: d, outFeatures: cfg.intermediate, hasBias: true, reluChannels: true },
    { name: "fc2", role: "mlp.out", inFeatures: cfg.intermediate, outFeatures: d, hasBias: true, reluChannels: true },
  ];
}

function blockShapes(cfg: ModelConfig): Map<string, number[]> {
  return addLayerNormShapes(linearShapes(linears(cfg)), ["self_attn_layer_norm", "final_layer_norm"], cfg.hidden);
}

function outerShapes(cfg: ModelConfig): Map<string, number[]> {
  const d = cfg.hidden;
  const shapes = new Map<string, number[]>([
    [EMBED, [cfg.vocabSize, d]],
    [POSITIONS, [cfg.maxPositions + POSITION_OFFSET, d]],
  ]);
  if (hasFinalNorm(cfg)) addLayerNormShapes(shapes, [FINAL_NORM], d);
  if (!cfg.tiedHead) shapes.set(LM_HEAD_WEIGHT, [d, cfg.vocabSize]);
  return shapes;
}

function embed(outer: WeightMap, ids: Tensor, cfg: ModelConfig): Tensor {
  return tf.tidy(() => embedWithPositions(outer, ids, EMBED, POSITIONS, POSITION_OFFSET, cfg.maxPositions)); // [B, T, d]
}

function block(weights: WeightMap, x: Tensor, cfg: ModelConfig, options?: BlockOptions): Tensor {
  return tf.tidy(() => {
    const pre = preLayerNorm(cfg);
    const norm = (name: string, h: Tensor) => namedLayerNorm(weights, name, h, cfg.normEps);
    const scale = 1 / Math.sqrt(cfg.hidden / cfg.heads);

    const a = pre ? norm("self_attn_layer_norm", x) : x; // [B, T, d]
    const q = splitHeads(linear(weights, "self_attn.q_proj", a, options), cfg.heads); // [B, T, H, hd]
    const k = splitHeads(linear(weights, "self_attn.k_proj", a, options), cfg.heads);
    const v = splitHeads(linear(weights, "self_attn.v_proj", a, options), cfg.heads);
    const attn = causalAttention(q, k, v, scale); // [B, T, d]
    let h = tf.add(x, linear(weights, "self_attn.out_proj", attn, options)); // [B, T, d]
    if (!pre) h = norm("self_attn_layer_norm", h);

    const m = pre ? norm("final_layer_norm", h) : h; // [B, T, d]
    const up = tf.relu(linear(weights, "fc1", m, options)); // [B, T, m]
    h = tf.add(h, linear(weights, "fc2", up, options)); // [B, T, d]
    return pre ? h : norm("final_layer_norm", h);
  });
}

function headNorm(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return hasFinalNorm(cfg) ? namedLayerNorm(outer, FINAL_NORM, x, cfg.normEps) : tf.clone(x); // [B, T, d]
}

function head(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return tf.tidy(() => lmHead(headNorm(outer, x, cfg), outer, EMBED, cfg.tiedHead)); // [B, T, V]
}

/** The OPT architecture (`model_type` "opt"). */
export const opt: Architecture = {
  modelTypes: ["opt"],
  parseConfig,
  blockPrefix: (i) => `model.decoder.layers.${i}.`,
  basePrefix: "model.",
  blockShapes,
  outerShapes,
  storedTransposed: nnLinearTransposed(LINEAR_NAMES),
  linears,
  embed,
  block,
  head,
  headNorm,
  vocabularyNames: (cfg) => vocabularyNames(EMBED, cfg),
};
