/**
 * The starting weights of `offtune pretrain --init <dir>`: an existing Hugging
 * Face OPT checkpoint (config.json + model.safetensors, F32, F16 or BF16),
 * read through the checkpoint reader every verb uses (src/model/load.ts,
 * docs/DESIGN.md "Models") into the flat parameter vector of
 * src/train/params.ts. The run then starts afresh from these weights: its own
 * schedule, fresh AdamW moments, step 0 (src/train/pretrain_run.ts).
 *
 * Opening checks what docs/GUARANTEES.md "What is verified" lists for every
 * checkpoint (config and weights agree, no NaN or ±Inf, a known
 * architecture), and more strictly that the file holds no tensor besides the
 * config's weights: a continuation must carry every stored weight over.
 *
 * @module
 */
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint.ts";
import { CheckpointError } from "../io/errors.ts";
import { checkNoOtherTensors, checkWeightsMatchConfig, resolveModel } from "../model/load.ts";
import { openModel } from "../model/model_handle.ts";
import type { AdapterSplit, ModelHandle } from "../records/records.ts";
import { flattenWeights, type ParamLayout } from "./params.ts";
import { releaseBlocks, residentModel } from "./tune.ts";

/** Pretraining gives no block an adapter role: it trains every block alike. */
const NO_ADAPTERS: AdapterSplit = { bottom: 0, top: 0 };

/**
 * Opens the checkpoint in `dir` as the start of a pretraining run; the
 * caller closes it. Its `sourceHash` is what the run records of it. The
 * headers are checked first (architecture, then config against weights,
 * then surplus tensors), before any weight is read.
 *
 * @throws CheckpointError naming the file and the problem: a missing
 *   directory, config.json or weights file, an unknown architecture or one
 *   other than OPT (the one offtune pretrains), a missing, surplus or
 *   wrongly shaped tensor
 */
export async function openInitCheckpoint(dir: string): Promise<ModelHandle> {
  const reader = await openCheckpoint(dir, { scanNonFinite: false });
  try {
    const { arch, cfg } = resolveModel(reader);
    if (cfg.modelType !== "opt") {
      const config = join(dir, "config.json");
      throw new CheckpointError(
        config,
        `Cannot start a pretraining run from "${dir}": offtune pretrains OPT models, "${config}" has model_type "${cfg.modelType}"`,
      );
    }
    checkWeightsMatchConfig(reader, arch, cfg);
    checkNoOtherTensors(reader, arch, cfg);
  } finally {
    await reader.close();
  }
  return await openModel(dir, { split: NO_ADAPTERS });
}

/**
 * Every weight of the open checkpoint as one flat float32 vector in
 * `layout` order (F16 and BF16 values decode exactly), read block by block.
 *
 * @throws CheckpointError naming the tensor and file of the first NaN or ±Inf
 */
export async function checkpointParams(handle: ModelHandle, layout: ParamLayout): Promise<Float32Array> {
  const model = await residentModel(handle);
  try {
    return flattenWeights(layout, model.outer, model.blocks);
  } finally {
    releaseBlocks(model);
  }
}
