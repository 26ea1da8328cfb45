/**
 * The contract every architecture implements (docs/DESIGN.md "Models").
 *
 * Conventions, fixed here for the whole tree:
 * - Activations are `[B, T, d]` float32 tensors (batch, tokens, hidden).
 * - A linear map is stored in *kernel layout* `[in, out]`, so `y = x @ W + b`
 *   is a plain (untransposed) matMul. Hugging Face stores `nn.Linear` weights
 *   as `[out, in]`: loaders transpose them once, savers transpose back. docs/METHOD.md
 *   writes `W` as out×in; the numerics convert where they need that view.
 * - Within a block, weights are named by their Hugging Face names with the
 *   block prefix removed (OPT: `self_attn.q_proj.weight`, GPT-2: `attn.c_attn.weight`,
 *   LLaMA: `mlp.gate_proj.weight`), so a `WeightMap` round-trips to HF files.
 * - A compressed (DRD) linear `name` may instead carry `name.weight_u` `[in, r]`
 *   and `name.weight_v` `[r, out]` with `W ≈ U V`; block functions accept both.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";

/** Named tensors of one block, or of the non-block ("outer") part of a model. */
export type WeightMap = Map<string, Tensor>;

/** The normalised configuration every architecture reads from `config.json`. */
export interface ModelConfig {
  /** `model_type` as in config.json (registry key). */
  modelType: string;
  /** Vocabulary size V (rows of the token embedding). */
  vocabSize: number;
  /** Hidden width d. */
  hidden: number;
  /** Number of transformer blocks L. */
  layers: number;
  /** Attention heads. */
  heads: number;
  /** Key/value heads (grouped-query attention); equals `heads` otherwise. */
  kvHeads: number;
  /** MLP intermediate width m. */
  intermediate: number;
  /** Longest sequence the position scheme allows. */
  maxPositions: number;
  /** Epsilon of the layer norms (or RMSNorms). */
  normEps: number;
  /** Whether the LM head shares the token embedding matrix. */
  tiedHead: boolean;
  /** The untouched config.json, kept so savers write it back verbatim. */
  raw: Record<string, unknown>;
}

/** Which part of the network a linear belongs to (DRD vs SCP, docs/METHOD.md §2). */
export type LinearRole =
  | "attn.q" | "attn.k" | "attn.v" | "attn.out" | "attn.qkv"
  | "mlp.in" | "mlp.gate" | "mlp.up" | "mlp.out";

/** One linear map of a block, as the statistics and compressors see it. */
export interface LinearSpec {
  /** Weight name inside the block (without `.weight`), e.g. `self_attn.q_proj`. */
  name: string;
  /** What the linear does in the block: decides DRD (attention) or SCP (MLP). */
  role: LinearRole;
  /** Input and output widths of the full (uncompressed) linear. */
  inFeatures: number;
  /** Output width of the full (uncompressed) linear. */
  outFeatures: number;
  /** Whether the linear has a bias `name.bias`. */
  hasBias: boolean;
  /**
   * Set on both linears of an MLP whose channels are `h = relu(y₁)` of the
   * producer's output `y₁` and feed the consumer unchanged (OPT's fc1 and
   * fc2): SCP's two first-order terms are then one statistic of the
   * producer's γ and the consumer's input, summed instead of their
   * gradients `g` (docs/GRADOT.md "SCP's first-order terms"). Absent on
   * GELU and SwiGLU MLPs and on attention.
   */
  reluChannels?: boolean;
}

/** Options a block forward accepts beyond its weights and input. */
export interface BlockOptions {
  /**
   * Zero tensors added to each named linear's output `[B, T, out]`; the
   * gradient of the loss w.r.t. a probe is γ = ∂ℓ/∂y (docs/DESIGN.md "Models").
   */
  probes?: Map<string, Tensor>;
  /**
   * Called with each linear's input `[B, T, in]` as the forward runs, so KFAC
   * can accumulate `A = E[x xᵀ]` without a second pass. Must not dispose it.
   * Tensors the hook creates belong to the caller's `tf.tidy` (and, under
   * `tf.grads`, to its scope): keep results with `tf.keep` or read them out.
   */
  onLinearInput?: (name: string, x: Tensor) => void;
  /**
   * Called with each linear's output `[B, T, out]` (bias added, probe not),
   * so a calibration forward can store what a later VJP replays
   * (`replay`). Must not dispose it; tensors belong to the caller's scope as
   * with `onLinearInput`.
   */
  onLinearOutput?: (name: string, y: Tensor) => void;
  /**
   * Stored outputs `[B, T, out]` (as `onLinearOutput` saw them, from the same
   * inputs and weights) that stand in for the named linears' products: the
   * recomputed forward of a VJP skips their matrix products, and the gradient
   * w.r.t. the linear's input is still `dy Wᵀ` (docs/GRADOT.md
   * "Benchmarks"). No gradient reaches the weights through a replayed linear.
   */
  replay?: Map<string, Tensor>;
}

/** An architecture: a descriptor plus its block function (docs/DESIGN.md "Models"). */
export interface Architecture {
  /** config.json `model_type` values this architecture serves. */
  modelTypes: string[];
  /** Reads config.json into a {@link ModelConfig}; throws on missing keys. */
  parseConfig(raw: Record<string, unknown>): ModelConfig;
  /** Hugging Face name prefix of block `i`, e.g. `model.decoder.layers.3.`. */
  blockPrefix(i: number): string;
  /**
   * Hugging Face's `base_model_prefix` with its dot (`model.`, `transformer.`):
   * checkpoints of the bare base model omit it, so loaders accept every name
   * with or without it. Names here (and saved files) carry it.
   */
  basePrefix?: string;
  /** Expected block weights: local name -> shape in kernel layout. */
  blockShapes(cfg: ModelConfig): Map<string, number[]>;
  /** Expected non-block weights: HF name -> shape in kernel layout. */
  outerShapes(cfg: ModelConfig): Map<string, number[]>;
  /** Whether HF stores this weight as `[out, in]` (so the loader transposes it). */
  storedTransposed(name: string): boolean;
  /** The linears of one block, in forward order. */
  linears(cfg: ModelConfig): LinearSpec[];
  /** Token ids `[B, T]` (int32) -> hidden states `[B, T, d]` before block 0. */
  embed(outer: WeightMap, ids: Tensor, cfg: ModelConfig): Tensor;
  /** One block: `[B, T, d]` -> `[B, T, d]`, causal. */
  block(
    weights: WeightMap,
    x: Tensor,
    cfg: ModelConfig,
    options?: BlockOptions,
  ): Tensor;
  /** Hidden states after the last block `[B, T, d]` -> logits `[B, T, V]`. */
  head(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor;
  /**
   * The part of `head` before the vocabulary projection: the final norm
   * (identity without one), `[B, T, d]` -> `[B, T, d]`. A streamed head
   * (`src/model/vocabulary.ts`) applies the projection itself, chunk by chunk.
   */
  headNorm(outer: WeightMap, x: Tensor, cfg: ModelConfig): Tensor;
  /**
   * The outer weights' vocabulary matrices, by HF name: the token embedding
   * and the LM head's weight (the same name when tied). Both are stored
   * `[V, d]` in checkpoints, so their rows can be streamed from the file.
   */
  vocabularyNames(cfg: ModelConfig): VocabularyNames;
}

/** HF names of a model's vocabulary matrices (see `Architecture.vocabularyNames`). */
export interface VocabularyNames {
  embedding: string;
  head: string;
}
