/**
 * The `config.json` of a freshly pretrained OPT model, with the keys and
 * values Hugging Face's `OPTConfig` writes, so `OPTForCausalLM.from_pretrained`
 * and offtune's own loader (src/model/opt.ts) both read it.
 *
 * Choices: pre-LN with a final norm and a tied head (every OPT size but
 * 350m), ReLU, biases everywhere, `word_embed_proj_dim = hidden_size`.
 * Dropouts are written as 0 because offtune's trainer uses none; `init_std`
 * is the 0.02 of src/train/init.ts.
 *
 * @module
 */

/** The hyper-parameters that define an OPT model's shape and special tokens. */
export interface OptHyperParameters {
  /** Transformer blocks (`num_hidden_layers`). */
  layers: number;
  /** Model width (`hidden_size`). */
  hidden: number;
  /** Attention heads (`num_attention_heads`). */
  heads: number;
  /** MLP width (`ffn_dim`). */
  ffn: number;
  /** Longest sequence the learned positions cover (`max_position_embeddings`). */
  maxPositions: number;
  /** Vocabulary size (`vocab_size`). */
  vocabSize: number;
  /** Beginning-of-sequence token id. */
  bosId: number;
  /** End-of-sequence token id. */
  eosId: number;
  /** Padding token id. */
  padId: number;
}

/** Standard deviation of the initial weights (HF OPT `init_std`). */
export const OPT_INIT_STD = 0.02;

/**
 * The HF `config.json` object for `p`; `dtype` is the stored weights'
 * `torch_dtype`.
 *
 * @throws Error naming the value when a size is not a positive integer, the
 *   heads do not divide the width, or a special id lies outside the vocabulary
 */
export function optConfigJson(
  p: OptHyperParameters,
  dtype: "float32" | "float16" = "float32",
): Record<string, unknown> {
  for (const key of ["layers", "hidden", "heads", "ffn", "maxPositions", "vocabSize"] as const) {
    if (!Number.isInteger(p[key]) || p[key] <= 0) {
      throw new Error(`OPT ${key} must be a positive integer, got ${p[key]}`);
    }
  }
  if (p.hidden % p.heads !== 0) throw new Error(`OPT hidden size ${p.hidden} is not divisible by ${p.heads} heads`);
  for (const key of ["bosId", "eosId", "padId"] as const) {
    if (!Number.isInteger(p[key]) || p[key] < 0 || p[key] >= p.vocabSize) {
      throw new Error(`OPT ${key} must be a token id below the vocabulary size ${p.vocabSize}, got ${p[key]}`);
    }
  }
  return {
    _remove_final_layer_norm: false,
    activation_dropout: 0.0,
    activation_function: "relu",
    architectures: ["OPTForCausalLM"],
    attention_dropout: 0.0,
    bos_token_id: p.bosId,
    do_layer_norm_before: true,
    dropout: 0.0,
    enable_bias: true,
    eos_token_id: p.eosId,
    ffn_dim: p.ffn,
    hidden_size: p.hidden,
    init_std: OPT_INIT_STD,
    layer_norm_elementwise_affine: true,
    layerdrop: 0.0,
    max_position_embeddings: p.maxPositions,
    model_type: "opt",
    num_attention_heads: p.heads,
    num_hidden_layers: p.layers,
    pad_token_id: p.padId,
    tie_word_embeddings: true,
    torch_dtype: dtype,
    use_cache: true,
    vocab_size: p.vocabSize,
    word_embed_proj_dim: p.hidden,
  };
}
