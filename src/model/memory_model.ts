/**
 * A {@link ModelHandle} over blocks held in memory (e.g. an emulator built
 * and kept without writing shards, for a sweep): `loadBlock` hands out
 * clones, so consumers may dispose what they get as with any handle.
 *
 * @module
 */
import type { WeightMap } from "./types.ts";
import { tf } from "../tensor/backend.ts";
import type { ModelHandle } from "../records/records.ts";
import { disposeWeights } from "./weights.ts";

/** A clone of every tensor of `weights`. */
export function cloneWeights(weights: WeightMap): WeightMap {
  return new Map([...weights].map(([k, t]) => [k, tf.clone(t)]));
}

/**
 * `base`'s config, split, block indices, hash and outer weights with `blocks`
 * as its blocks (one per `base.blockIndices`, in that order). Takes
 * ownership of `blocks` (disposed by `close`); `base.outer` stays `base`'s.
 */
export function memoryModel(base: ModelHandle, blocks: WeightMap[], source = `${base.source} (in memory)`): ModelHandle {
  const count = base.blockIndices.length;
  if (blocks.length !== count) {
    throw new Error(`An in-memory model of "${base.source}" needs ${count} blocks, got ${blocks.length}`);
  }
  const position = new Map(base.blockIndices.map((index, p) => [index, p]));
  return {
    ...base,
    source,
    loadBlock: (i) => {
      const p = position.get(i);
      if (p === undefined) return Promise.reject(new Error(`In-memory model "${source}" has no block ${i}`));
      return Promise.resolve(cloneWeights(blocks[p]));
    },
    close: () => Promise.resolve(blocks.forEach(disposeWeights)),
  };
}
