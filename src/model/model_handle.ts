/**
 * Opens a Hugging Face checkpoint as a {@link ModelHandle}: architecture,
 * config, adapter split, a content hash for provenance, and lazy per-block
 * weight loading (docs/DESIGN.md "Scale": only the block being processed is
 * resident).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint.ts";
import { shapeSize } from "../io/shard_schema.ts";
import { checkWeightsMatchConfig, loadBlockWeights, loadOuterWeights, resolveModel, vocabularyRows } from "./load.ts";
import { type AdapterSplit, everyBlock, type ModelHandle } from "../records/records.ts";
import { collectGarbage } from "../tensor/collect_garbage.ts";
import { disposeWeights } from "./weights.ts";

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Adapter blocks at the bottom and top (docs/METHOD.md §1). Default 2 + 2, the offsite-tuning setting. */
  split?: AdapterSplit;
  /** Scan every weight for NaN/Inf as it is read (default true). */
  scanNonFinite?: boolean;
  /**
   * Leave the vocabulary matrices in the file and read them by rows
   * (`ModelHandle.vocabulary`) instead of loading them into `outer`: for
   * streaming builds of models whose embedding outweighs a block. Default false.
   */
  streamVocabulary?: boolean;
  /**
   * The checkpoint's `sourceHash` when the caller has it already (a
   * calibration worker opening the building thread's checkpoint): the files
   * are not read through again to hash them.
   */
  sourceHash?: string;
}

/**
 * Float32 block size from which `loadBlock` forces a full garbage collection
 * first (about 20 ms here): below it V8's own schedule frees a block's dead
 * arrays soon enough (OPT-125M blocks are 28 MB), above it (OPT-1.3B: 201 MB)
 * the dead blocks would pile up in the peak RSS.
 */
const FORCED_GC_BLOCK_BYTES = 64 * 2 ** 20;

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

/**
 * SHA-256 of config.json and every weight file, read through one 1 MiB
 * buffer (nothing held in memory, and no fresh buffer per read: a read
 * stream's would add the checkpoint's size to V8's external memory, whose
 * growth starts full garbage collections).
 */
async function hashCheckpoint(dir: string, files: string[]): Promise<string> {
  const hash = createHash("sha256");
  const buffer = new Uint8Array(1 << 20);
  for (const file of [join(dir, "config.json"), ...files]) {
    const handle = await open(file, "r");
    try {
      for (let read = 1; read > 0;) {
        ({ bytesRead: read } = await handle.read(buffer, 0, buffer.length, null));
        hash.update(buffer.subarray(0, read));
      }
    } finally {
      await handle.close();
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
    checkWeightsMatchConfig(reader, arch, cfg);
    const split = options.split ?? DEFAULT_SPLIT;
    checkSplit(split, cfg.layers, dir);
    const files = [...new Set(reader.tensors().map((t) => t.file))].sort();
    const sourceHash = options.sourceHash ?? await hashCheckpoint(dir, files);
    const vocabulary = options.streamVocabulary ? vocabularyRows(reader, arch, cfg) : undefined;
    const streamed = vocabulary ? [...new Set([vocabulary.embedding.name, vocabulary.head.name])] : [];
    const outer = await loadOuterWeights(reader, arch, cfg, streamed);
    const blockValues = [...arch.blockShapes(cfg).values()].reduce((n, shape) => n + shapeSize(shape), 0);
    const collectBeforeLoad = 4 * blockValues >= FORCED_GC_BLOCK_BYTES;
    return {
      source: dir,
      arch,
      cfg,
      split,
      blockIndices: everyBlock(cfg.layers),
      sourceHash,
      outer,
      ...(vocabulary ? { vocabulary } : {}),
      loadBlock: (i) => {
        // The dead copies of the block before (its statistics, chunk copies)
        // must not share the RSS with this one; the load itself stages
        // nothing, it reads into the tensor's memory.
        if (collectBeforeLoad) collectGarbage();
        return loadBlockWeights(reader, arch, cfg, i);
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
