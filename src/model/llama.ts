/**
 * The LLaMA family, as Hugging Face's `modeling_llama.py`: RMSNorm
 * (`input_layernorm`, `post_attention_layernorm`, final `model.norm`), rotary
 * position embedding with `rope_theta` and HF's `rotate_half` convention,
 * grouped-query attention (`num_key_value_heads`), SwiGLU MLP
 * `down(silu(gate(x)) · up(x))`, no biases unless `attention_bias` /
 * `mlp_bias`, and an LM head tied only when `tie_word_embeddings` is true.
 *
 * `model_type` "mistral" is served too: its math is LLaMA's except sliding-window
 * attention, which only differs once a sequence is longer than `sliding_window`;
 * such sequences are refused rather than computed differently.
 * Qwen2 is not listed: it has biases on q/k/v but not on o_proj.
 *
 * Rejected: `rope_scaling` (linear, dynamic, YaRN, llama3), a `head_dim` other
 * than `hidden_size / num_attention_heads`, activations other than SiLU.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import {
  configBool,
  configChoice,
  configInt,
  configNumber,
  headDim,
  requireSupported,
} from "./config_fields.ts";
import {
  applyRope,
  causalAttention,
  embedTokens,
  linear,
  lmHead,
  rmsNorm,
  ropeTables,
  splitHeads,
  vocabularyNames,
  weightOf,
} from "./layers.ts";
import { dimsOf, linearShapes, LM_HEAD_WEIGHT, nnLinearTransposed } from "./shapes.ts";
import type { Architecture, BlockOptions, LinearSpec, ModelConfig, WeightMap } from "./types.ts";

const EMBED = "model.embed_tokens.weight";
const FINAL_NORM = "model.norm.weight";
const LINEAR_NAMES = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
];

function ropeTheta(cfg: ModelConfig): number {
  return configNumber(cfg.raw, "rope_theta", 10000);
}

function parseConfig(raw: Record<string, unknown>): ModelConfig {
  const modelType = configChoice(raw, "model_type", "llama", llama.modelTypes);
  const hidden = configInt(raw, "hidden_size");
  const heads = configInt(raw, "num_attention_heads");
  const kvHeads = configInt(raw, "num_key_value_heads", heads);
  const hd = headDim(hidden, heads);
  requireSupported(
    configInt(raw, "head_dim", hd) === hd,
    `"head_dim" ${String(raw.head_dim)} differs from hidden_size / num_attention_heads = ${hd}`,
  );
  if (heads % kvHeads !== 0) {
    throw new Error(
      `Invalid config.json: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    );
  }
  requireSupported(hd % 2 === 0, `rotary embedding needs an even head dimension, found ${hd}`);
  const scaling = raw.rope_scaling as { rope_type?: unknown; type?: unknown } | null | undefined;
  const scalingType = scaling?.rope_type ?? scaling?.type;
  requireSupported(
    scaling === undefined || scaling === null || scalingType === "default",
    `"rope_scaling" ${JSON.stringify(scaling)} is not supported (only unscaled RoPE)`,
  );
  configChoice(raw, "hidden_act", "silu", ["silu"]);
  // Flags read again by linears/block: check their types once, here.
  configBool(raw, "attention_bias", false);
  configBool(raw, "mlp_bias", false);
  configNumber(raw, "rope_theta", 10000);
  return {
    modelType,
    vocabSize: configInt(raw, "vocab_size"),
    hidden,
    layers: configInt(raw, "num_hidden_layers"),
    heads,
    kvHeads,
    intermediate: configInt(raw, "intermediate_size"),
    maxPositions: configInt(raw, "max_position_embeddings", 2048),
    normEps: configNumber(raw, "rms_norm_eps", 1e-6),
    tiedHead: configBool(raw, "tie_word_embeddings", false),
    raw,
  };
}

function linears(cfg: ModelConfig): LinearSpec[] {
  const d = cfg.hidden;
  const hd = d / cfg.heads;
  const m = cfg.intermediate;
  const attnBias = configBool(cfg.raw, "attention_bias", false);
  const mlpBias = configBool(cfg.raw, "mlp_bias", false);
  return [
    { name: "self_attn.q_proj", role: "attn.q", inFeatures: d, outFeatures: cfg.heads * hd, hasBias: attnBias },
    { name: "self_attn.k_proj", role: "attn.k", inFeatures: d, outFeatures: cfg.kvHeads * hd, hasBias: attnBias },
    { name: "self_attn.v_proj", role: "attn.v", inFeatures: d, outFeatures: cfg.kvHeads * hd, hasBias: attnBias },
    { name: "self_attn.o_proj", role: "attn.out", inFeatures: cfg.heads * hd, outFeatures: d, hasBias: attnBias },
    { name: "mlp.gate_proj", role: "mlp.gate", inFeatures: d, outFeatures: m, hasBias: mlpBias },
    { name: "mlp.up_proj", role: "mlp.up", inFeatures: d, outFeatures: m, hasBias: mlpBias },
    { name: "mlp.down_proj", role: "mlp.out", inFeatures: m, outFeatures: d, hasBias: mlpBias },
  ];
}

function blockShapes(cfg: ModelConfig): Map<string, number[]> {
  const shapes = linearShapes(linears(cfg));
  shapes.set("input_layernorm.weight", [cfg.hidden]);
  shapes.set("post_attention_layernorm.weight", [cfg.hidden]);
  return shapes;
}

function outerShapes(cfg: ModelConfig): Map<string, number[]> {
  const d = cfg.hidden;
  const shapes = new Map<string, number[]>([
    [EMBED, [cfg.vocabSize, d]],
    [FINAL_NORM, [d]],
  ]);
  if (!cfg.tiedHead) shapes.set(LM_HEAD_WEIGHT, [d, cfg.vocabSize]);
  return shapes;
}

function embed(outer: WeightMap, ids: Tensor, cfg: ModelConfig): Tensor {
  const t = dimsOf(ids, 2, "token ids [B, T]")[1];
  if (t > cfg.maxPositions) {
    throw new Error(`Sequence length ${t} exceeds the model's ${cfg.maxPositions} positions`);
  }
  return embedTokens(weightOf(outer, EMBED), ids); // [B, T, d]
}

function block(weights: WeightMap, x: Tensor, cfg: ModelConfig, options?: BlockOptions): Tensor {
  const t = dimsOf(x, 3, "hidden states [B, T, d]")[1];
  const window = cfg.raw.sliding_window;
  if (typeof window === "number" && t > window) {
    throw new Error(
      `Sequence length ${t} exceeds sliding_window ${window}; sliding-window attention is not implemented`,
    );
  }
  return tf.tidy(() => {
    const hd = cfg.hidden / cfg.heads;
    const norm = (name: string, h: Tensor) => rmsNorm(h, weightOf(weights, `${name}.weight`), cfg.normEps);
    const { cos, sin } = ropeTables(t, hd, ropeTheta(cfg)); // [1, T, 1, hd]

    const a = norm("input_layernorm", x); // [B, T, d]
    const q = applyRope(splitHeads(linear(weights, "self_attn.q_proj", a, options), cfg.heads), cos, sin); // [B, T, H, hd]
    const k = applyRope(splitHeads(linear(weights, "self_attn.k_proj", a, options), cfg.kvHeads), cos, sin); // [B, T, Hkv, hd]
    const v = splitHeads(linear(weights, "self_attn.v_proj", a, options), cfg.kvHeads); // [B, T, Hkv, hd]
    const attn = causalAttention(q, k, v, 1 / Math.sqrt(hd)); // [B, T, H·hd]
    const h = tf.add(x, linear(weights, "self_attn.o_proj", attn, options)); // [B, T, d]

    const m = norm("post_attention_layernorm", h); // [B, T, d]
    const gate = silu(linear(weights, "mlp.gate_proj", m, options)); // [B, T, m]
    const up = linear(weights, "mlp.up_proj", m, options); // [B, T, m]
    return tf.add(h, linear(weights, "mlp.down_proj", tf.mul(gate, up), options)); // [B, T, d]
  });
}

/** SiLU `x · sigmoid(x)`, elementwise. */
function silu(x: Tensor): Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

function headNorm(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return rmsNorm(x, weightOf(outer, FINAL_NORM), cfg.normEps); // [B, T, d]
}

function head(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor {
  return tf.tidy(() => lmHead(headNorm(outer, x, cfg), outer, EMBED, cfg.tiedHead)); // [B, T, V]
}

/** The LLaMA architecture (`model_type` "llama", and "mistral" within its sliding window). */
export const llama: Architecture = {
  modelTypes: ["llama", "mistral"],
  parseConfig,
  blockPrefix: (i) => `model.layers.${i}.`,
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
