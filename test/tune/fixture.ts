// Shared fixtures of the tuning tests: tiny random OPT checkpoints and a toy
// multiple-choice task built from token ids by hand.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveCheckpoint } from "../../src/io/checkpoint.ts";
import { toHfTensors } from "../../src/model/load.ts";
import { opt } from "../../src/model/opt.ts";
import { tf } from "../../src/tensor/backend.ts";
import { initOptWeights } from "../../src/train/init.ts";
import type { TuneExample } from "../../src/train/mc_batches.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";

/** The tiny OPT of these tests: 4 blocks, width 16, vocab 40, 24 positions. */
export const TINY = { layers: 4, hidden: 16, heads: 2, ffn: 32, maxPositions: 24, vocabSize: 40, bosId: 2, eosId: 2, padId: 1 };

/** A fresh temporary directory. */
export function tempDir(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `offtune-tune-${tag}-`));
}

/**
 * Writes a randomly initialised tiny OPT (float32, HF init) to `dir` and
 * returns `dir`. The token embedding is scaled to std 0.5: with HF's 0.02 the
 * frozen tied head's logits stay within about ±0.3 (|LN(h)| = √16, |e| ≈ 0.08),
 * so no adapter could fit a task; a pretrained model's embeddings are larger.
 */
export async function tinyModel(dir: string, seed = 0, shape: Partial<typeof TINY> = {}): Promise<string> {
  const config = optConfigJson({ ...TINY, ...shape });
  const cfg = opt.parseConfig(config);
  const { outer, blocks } = initOptWeights(opt, cfg, seed);
  const embed = "model.decoder.embed_tokens.weight";
  const scaled = tf.mul(outer.get(embed)!, 25);
  outer.get(embed)!.dispose();
  outer.set(embed, scaled);
  try {
    await saveCheckpoint(dir, config, [toHfTensors(opt, cfg, "outer", outer), ...blocks.map((w, i) => toHfTensors(opt, cfg, i, w))].flat());
  } finally {
    tf.dispose([...outer.values(), ...blocks.flatMap((w) => [...w.values()])]);
  }
  return dir;
}

/**
 * A learnable toy task: BOS, 3-6 context ids in [10, 30), then the answer
 * `10 + (first context id · 7) mod 20` and, for every third item, a second
 * answer token 35 (multi-token answers).
 */
export function toyExamples(count: number, salt = 0): TuneExample[] {
  return Array.from({ length: count }, (_, i) => {
    const length = 3 + ((i + salt) % 4);
    const context = Array.from({ length }, (_, j) => 10 + ((i * 11 + j * 5 + salt * 3) % 20));
    const answer = [10 + ((context[0] * 7) % 20), ...(i % 3 === 0 ? [35] : [])];
    return { id: `toy-${i}`, tokens: [2, ...context, ...answer], start: 1 + length };
  });
}
