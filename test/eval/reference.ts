/**
 * Independent references for the eval tests: a plain full-sequence forward
 * (one sequence, no padding, no gather, every block resident via
 * `forwardLogits`) and log-softmax sums written as float64 loops.
 */
import { afterAll, beforeAll } from "vitest";
import { forwardLogits } from "../../src/model/forward.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { openSource } from "../../src/model/model_source.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { tf } from "../../src/tensor/backend.ts";
import { fixtureDir } from "../model/golden.ts";

/** A golden fixture model (fixtures/golden/<name>) opened for evaluation. */
export function openGolden(name: string): Promise<ModelHandle> {
  return openSource(fixtureDir(name), { split: { bottom: 0, top: 0 } });
}

/** `log softmax(row)[target]` in float64. */
export function logSoftmaxAt(row: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return row[target] - max - Math.log(sum);
}

/** Every block of `model`, loaded (caller disposes with {@link disposeBlocks}). */
export async function loadBlocks(model: ModelHandle): Promise<WeightMap[]> {
  const blocks: WeightMap[] = [];
  for (let i = 0; i < model.cfg.layers; i++) blocks.push(await model.loadBlock(i));
  return blocks;
}

/** Disposes blocks from {@link loadBlocks}. */
export function disposeBlocks(blocks: WeightMap[]): void {
  for (const w of blocks) tf.dispose([...w.values()]);
}

/**
 * A golden model with every block loaded, for the tests of the enclosing
 * `describe`: filled in before them (hooks registered here run before the
 * caller's own) and released after them.
 */
export function goldenWithBlocks(name: string): { model: ModelHandle; blocks: WeightMap[] } {
  const golden = {} as { model: ModelHandle; blocks: WeightMap[] };
  beforeAll(async () => {
    golden.model = await openGolden(name);
    golden.blocks = await loadBlocks(golden.model);
  });
  afterAll(async () => {
    disposeBlocks(golden.blocks);
    await golden.model.close();
  });
  return golden;
}

/**
 * `Σ_{t ≥ start} log p(tokens[t] | tokens[< t])` by one forward of
 * `tokens[0 .. n-2]` alone and float64 log-softmax per position.
 */
export function referenceLogprob(model: ModelHandle, blocks: WeightMap[], tokens: readonly number[], start: number): number {
  const n = tokens.length;
  const ids = tf.tensor2d([tokens.slice(0, n - 1)], [1, n - 1], "int32");
  const logits = forwardLogits(model.arch, model.cfg, model.outer, blocks, ids); // [1, n-1, V]
  const v = logits.shape[2]!;
  const data = logits.dataSync();
  tf.dispose([ids, logits]);
  let sum = 0;
  for (let t = start; t < n; t++) sum += logSoftmaxAt(data.subarray((t - 1) * v, t * v), tokens[t]);
  return sum;
}

/** Deterministic pseudo-random token ids in [lo, hi). */
export function tokensOf(length: number, seed: number, lo: number, hi: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + (s % (hi - lo));
  });
}
