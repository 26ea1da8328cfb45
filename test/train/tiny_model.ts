// The tiny OPT the train tests share: 2 blocks, hidden 32, 4 heads, vocab 50.
import { optConfigJson } from "../../src/train/opt_config.ts";

/** HF config.json of the tiny test model (ctx 16). */
export const tinyConfig = optConfigJson({
  layers: 2,
  hidden: 32,
  heads: 4,
  ffn: 64,
  maxPositions: 16,
  vocabSize: 50,
  bosId: 2,
  eosId: 2,
  padId: 1,
});

/** A deterministic token batch `[batch, ctx]` with ids in [3, 50). */
export function tinyBatch(batch: number, ctx: number, salt = 0) {
  const ids = Int32Array.from({ length: batch * ctx }, (_, i) => 3 + ((i * 17 + salt * 5 + ((i * i) % 7)) % 47));
  return { ids, batch, ctx };
}
