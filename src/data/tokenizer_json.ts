/**
 * Writes a trained BPE vocabulary as a standard Hugging Face `tokenizer.json`
 * (readable by `tokenizers`, transformers.js and `src/io/tokenizer.ts`), set
 * up the way OPT's tokenizer is:
 *
 * - ids 0-3 are OPT's special tokens `<s>`, `<pad>`, `</s>`, `<unk>` (added
 *   tokens, `special: true`); `</s>` (id 2) is both BOS and EOS, as in OPT;
 * - model `BPE` over GPT-2's byte-level alphabet, `unk_token: null` (every
 *   byte has a token, so nothing is ever unknown);
 * - pre-tokenizer and decoder `ByteLevel` with `add_prefix_space: false`;
 * - post-processor `TemplateProcessing` that puts `</s>` before a sequence
 *   (`</s> $A`, pairs `</s> $A </s> $B`), OPT's convention;
 * - merges as `"left right"` strings (byte-level tokens hold no spaces), the
 *   form every `tokenizers` version reads.
 *
 * Also gives the matching `tokenizer_config.json` (bos/eos/pad/unk names).
 *
 * @module
 */
import type { BpeVocabulary } from "./bpe_train.ts";

/** OPT's special tokens in id order. */
export const OPT_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"] as const;

/** The Hugging Face tokenizer.json object for an OPT-style byte-level BPE vocabulary. */
export function toTokenizerJson(vocabulary: BpeVocabulary): Record<string, unknown> {
  const { tokens, merges } = vocabulary;
  for (const [i, special] of OPT_SPECIAL_TOKENS.entries()) {
    if (tokens[i] !== special) throw new Error(`Token ${i} is ${JSON.stringify(tokens[i])}, expected ${special}`);
  }
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => {
    vocab[t] = id;
  });
  const bos = { SpecialToken: { id: "</s>", type_id: 0 } };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: OPT_SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [bos, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        bos,
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** The `tokenizer_config.json` beside it: OPT names `</s>` as bos and eos. */
export function tokenizerConfigJson(): Record<string, unknown> {
  return {
    tokenizer_class: "GPT2Tokenizer",
    add_bos_token: true,
    add_prefix_space: false,
    bos_token: "</s>",
    eos_token: "</s>",
    pad_token: "<pad>",
    unk_token: "<unk>",
    model_max_length: 2048,
  };
}
