/**
 * Opens a Hugging Face checkpoint as a {@link ModelHandle}: architecture,
 * config, adapter split, a content hash for provenance, and lazy per-block
 * weight loading (DESIGN.md "Scale": only the block being processed is
 * resident).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint.ts";
import { loadBlockWeights, loadOuterWeights, resolveModel, vocabularyRows } from "../model/load.ts";
import { type AdapterSplit, everyBlock, type ModelHandle } from "../records/records.ts";
import { collectGarbage } from "../tensor/collect_garbage.ts";
import { disposeWeights } from "./weights.ts";

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Adapter blocks at the bottom and top (METHOD.md §1). Default 2 + 2, the offsite-tuning setting. */
  split?: AdapterSplit;
  /** Scan every weight for NaN/Inf as it is read (default true). */
  scanNonFinite?: boolean;
  /**
   * Leave the vocabulary matrices in the file and read them by rows
   * (`ModelHandle.vocabulary`) instead of loading them into `outer`: for
   * streaming builds of models whose embedding outweighs a block. Default false.
   */
  streamVocabulary?: boolean;
}

/** The offsite-tuning default: 2 bottom + 2 top adapter blocks (OT, GradOT on OPT-1.3B). */
export const DEFAULT_SPLIT: AdapterSplit = { bottom: 2, top: 2 };

/** Checks that `split` leaves at least one middle block of `layers`. */
export function checkSplit(split: AdapterSplit, layers: number, source: string): void {
  const ok = Number.isInteger(split.bottom) && Number.isInteger(split.top) &&
    split.bottom >= 0 && split.top >= 0 && split.bottom + split.top < layers;
  if (!ok) {
    throw new Error(
      `Adapter split ${split.bottom}+${split.top} leaves no middle block in "${source}" (${layers} blocks)`,
    );
  }
}

/** SHA-256 of config.json and every weight file, streamed (nothing held in memory). */
async function hashCheckpoint(dir: string, files: string[]): Promise<string> {
  const hash = createHash("sha256");
  for (const file of [join(dir, "config.json"), ...files]) {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Uint8Array);
    }
  }
  return hash.digest("hex");
}

/**
 * Opens the checkpoint in `dir` (config.json + model.safetensors or a sharded
 * index) without loading weights. The handle owns the open files: call
 * `close()` when done.
 */
export async function openModel(dir: string, options: OpenModelOptions = {}): Promise<ModelHandle> {
  const reader = await openCheckpoint(dir, { scanNonFinite: options.scanNonFinite ?? true });
  try {
    const { arch, cfg } = resolveModel(reader);
    const split = options.split ?? DEFAULT_SPLIT;
    checkSplit(split, cfg.layers, dir);
    const files = [...new Set(reader.tensors().map((t) => t.file))].sort();
    const sourceHash = await hashCheckpoint(dir, files);
    const vocabulary = options.streamVocabulary ? vocabularyRows(reader, arch, cfg) : undefined;
    const streamed = vocabulary ? [...new Set([vocabulary.embedding.name, vocabulary.head.name])] : [];
    const outer = await loadOuterWeights(reader, arch, cfg, streamed);
    return {
      source: dir,
      arch,
      cfg,
      split,
      blockIndices: everyBlock(cfg.layers),
      sourceHash,
      outer,
      ...(vocabulary ? { vocabulary } : {}),
      loadBlock: async (i) => {
        collectGarbage(); // the dead copies of the block before must not share the RSS with this one
        const weights = await loadBlockWeights(reader, arch, cfg, i);
        collectGarbage(); // nor its own staging copies (fp16 bytes, float32, transposed)
        return weights;
      },
      async close() {
        disposeWeights(outer);
        await reader.close();
      },
    };
  } catch (e) {
    await reader.close();
    throw e;
  }
}
