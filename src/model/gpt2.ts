/**
 * GPT-2, as Hugging Face's `modeling_gpt2.py`: token + learned position
 * embeddings (`wte`, `wpe`, no offset), pre-LN blocks (`ln_1`, `ln_2`), a fused
 * query/key/value projection `attn.c_attn`, `gelu_new` (tanh approximation)
 * MLP `mlp.c_fc`/`mlp.c_proj`, final `ln_f`, tied LM head.
 *
 * GPT-2's linears are `Conv1D` modules, which store the weight as `[in, out]`:
 * already kernel layout, so nothing is transposed on load (only an untied
 * `lm_head.weight`, an nn.Linear, is). Checkpoints name tensors with the
 * `transformer.` prefix (GPT2LMHeadModel) or without it (the hub's `gpt2`);
 * both load, and saves use the prefix.
 *
 * Rejected: `scale_attn_by_inverse_layer_idx` (a block would need its index),
 * `scale_attn_weights: false`, activations other than the tanh GELU.
 * `reorder_and_upcast_attn` only changes float16 rounding, so it is accepted.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { configBool, configChoice, configInt, configNumber, headDim, requireSupported } from "./config_fields.ts";
import { causalAttention, embedWithPositions, linear, lmHead, namedLayerNorm, splitHeads, vocabularyNames } from "./layers.ts";
import { addLayerNormShapes, linearShapes, LM_HEAD_WEIGHT } from "./shapes.ts";
import type { Architecture, BlockOptions, LinearSpec, ModelConfig, WeightMap } from "./types.ts";

const EMBED = "transformer.wte.weight";
const POSITIONS = "transformer.wpe.weight";
const FINAL_NORM = "transformer.ln_f";

/** sqrt(2/π), the constant of the tanh GELU approximation. */
const GELU_C = Math.sqrt(2 / Math.PI);

/** `gelu_new`: `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))`, elementwise (also ScaleOT's harmonizers, docs/METHOD.md §3). */
export function geluNew(x: Tensor): Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), GELU_C);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

function parseConfig(raw: Record<string, unknown>): ModelConfig {
  const hidden = configInt(raw, "n_embd");
  const heads = configInt(raw, "n_head");
  headDim(hidden, heads);
  configChoice(raw, "activation_function", "gelu_new", ["gelu_new", "gelu_pytorch_tanh"]);
  requireSupported(
    configBool(raw, "scale_attn_weights", true),
    `GPT-2 with "scale_attn_weights": false is not supported`,
  );
  requireSupported(
    !configBool(raw, "scale_attn_by_inverse_layer_idx", false),
    `GPT-2 with "scale_attn_by_inverse_layer_idx": true is not supported`,
  );
  configBool(raw, "reorder_and_upcast_attn", false);
  return {
    modelType: "gpt2",
    vocabSize: configInt(raw, "vocab_size"),
    hidden,
    layers: configInt(raw, "n_layer"),
    heads,
    kvHeads: heads,
    intermediate: configInt(raw, "n_inner", 4 * hidden),
    maxPositions: configInt(raw, "n_positions"),
    normEps: configNumber(raw, "layer_norm_epsilon", 1e-5),
    tiedHead: configBool(raw, "tie_word_embeddings", true),
    raw,
  };
}

function linears(cfg: ModelConfig): LinearSpec[] {
  const d = cfg.hidden;
  const m = cfg.intermediate;
  return [
    { name: "attn.c_attn", role: "attn.qkv", inFeatures: d, outFeatures: 3 * d, hasBias: true },
    { name: "attn.c_proj", role: "attn.out", inFeatures: d, outFeatures: d, hasBias: true },
    { name: "mlp.c_fc", role: "mlp.in", inFeatures: d, outFeatures: m, hasBias: true },
    { name: "mlp.c_proj", role: "mlp.out", inFeatures: m, outFeatures: d, hasBias: true },
  ];
}

function blockShapes(cfg: ModelConfig): Map<string, number[]> {
  return addLayerNormShapes(linearShapes(linears(cfg)), ["ln_1", "ln_2"], cfg.hidden);
}

function outerShapes(cfg: ModelConfig): Map<string, number[]> {
  const d = cfg.hidden;
  const shapes = new Map<string, number[]>([
    [EMBED, [cfg.vocabSize, d]],
    [POSITIONS, [cfg.maxPositions, d]],
  ]);
  addLayerNormShapes(shapes, [FINAL_NORM], d);
  if (!cfg.tiedHead) shapes.set(LM_HEAD_WEIGHT, [d, cfg.vocabSize]);
  return shapes;
}

function embed(outer: WeightMap, ids: Tensor, cfg: ModelConfig): Tensor {
  return tf.tidy(() => embedWithPositions(outer, ids, EMBED, POSITIONS, 0, cfg.maxPositions)); // [B, T, d]
}

function block(weights: WeightMap, x: Tensor, cfg: ModelConfig, options?: BlockOptions): Tensor {
  return tf.tidy(() => {
    const norm = (name: string, h: Tensor) => namedLayerNorm(weights, name, h, cfg.normEps);
    const d = cfg.hidden;

    const qkv = linear(weights, "attn.c_attn", norm("ln_1", x), options); // [B, T, 3d]
    const [q, k, v] = tf.split(qkv, [d, d, d], 2).map((t) => splitHeads(t, cfg.heads)); // [B, T, H, hd]
    const attn = causalAttention(q, k, v, 1 / Math.sqrt(d / cfg.heads)); // [B, T, d]
    const h = tf.add(x, linear(weights, "attn.c_proj", attn, options)); // [B, T, d]

    const up = geluNew(linear(weights, "mlp.c_fc", norm("ln_2", h), options)); // [B, T, m]
    return tf.add(h, linear(weights, "mlp.c_proj", up, options)); // [B, T, d]
  });
}

function headNorm(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return namedLayerNorm(outer, FINAL_NORM, x, cfg.normEps); // [B, T, d]
}

function head(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return tf.tidy(() => lmHead(headNorm(outer, x, cfg), outer, EMBED, cfg.tiedHead)); // [B, T, V]
}

/** The GPT-2 architecture (`model_type` "gpt2"). */
export const gpt2: Architecture = {
  modelTypes: ["gpt2"],
  parseConfig,
  blockPrefix: (i) => `transformer.h.${i}.`,
  basePrefix: "transformer.",
  blockShapes,
  outerShapes,
  storedTransposed: (name) => name === LM_HEAD_WEIGHT,
  linears,
  embed,
  block,
  head,
  headNorm,
  vocabularyNames: (cfg) => vocabularyNames(EMBED, cfg),
};
