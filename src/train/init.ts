/**
 * Random initialisation of an OPT model, as Hugging Face's
 * `OPTPreTrainedModel._init_weights`: every linear weight and embedding
 * ~ N(0, init_std²) (init_std 0.02), biases 0, LayerNorm weight 1 and bias 0,
 * and the `pad_token_id` row of the token embedding zeroed (nn.Embedding's
 * `padding_idx`). The learned position table has no padding row, as in HF.
 *
 * Draws come from the seeded {@link Prng} in flat-layout order
 * (src/train/params.ts), one normal per randomly initialised element, so the
 * same seed and config give the same weights on every runtime.
 *
 * @module
 */
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { OPT_INIT_STD } from "./opt_config.ts";
import { type ParamLayout, paramLayout, weightsFromFlat } from "./params.ts";
import { Prng } from "./prng.ts";

const TOKEN_EMBEDDING = "model.decoder.embed_tokens.weight";

/** The initial flat parameter vector of an OPT model in `layout` (rules in the module doc). */
export function initOptParams(layout: ParamLayout, cfg: ModelConfig, seed: number): Float32Array {
  if (cfg.modelType !== "opt") {
    throw new Error(`initOptParams initialises OPT models, got model_type "${cfg.modelType}"`);
  }
  const std = typeof cfg.raw.init_std === "number" ? cfg.raw.init_std : OPT_INIT_STD;
  const prng = new Prng(seed);
  const flat = new Float32Array(layout.size);
  for (const s of layout.slots) {
    const values = flat.subarray(s.offset, s.offset + s.size);
    if (s.name.endsWith(".bias")) continue; // zeros
    if (s.name.includes("layer_norm")) {
      values.fill(1);
      continue;
    }
    for (let i = 0; i < values.length; i++) values[i] = std * prng.normal();
    const pad = cfg.raw.pad_token_id;
    if (s.key === TOKEN_EMBEDDING && typeof pad === "number" && pad >= 0 && pad < cfg.vocabSize) {
      values.fill(0, pad * cfg.hidden, (pad + 1) * cfg.hidden);
    }
  }
  return flat;
}

/** Freshly initialised OPT weights as `WeightMap`s in kernel layout (the caller disposes them). */
export function initOptWeights(
  arch: Architecture,
  cfg: ModelConfig,
  seed: number,
): { outer: WeightMap; blocks: WeightMap[] } {
  const layout = paramLayout(arch, cfg);
  return weightsFromFlat(layout, initOptParams(layout, cfg, seed));
}
