/**
 * The plug-in writer: a model (outer weights plus a source of blocks) as a
 * complete Hugging Face checkpoint — config.json, model.safetensors and the
 * tokenizer — built in a temporary directory and renamed into place, one
 * block resident at a time. `offtune plug-in` writes the original model with
 * a tuned adapter through it, `offtune full-ft` the fine-tuned model.
 *
 * @module
 */
import { join } from "node:path";
import type { StageEvents } from "../events/stage_events.ts";
import { toHfTensors } from "../model/load.ts";
import type { WeightMap } from "../model/types.ts";
import type { ModelHandle } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";
import { createDirectoryTransaction, writeFileAtomic } from "./atomic.ts";
import { saveCheckpoint, type TensorToSave } from "./checkpoint.ts";
import { OUTPUT_MARKER, outputMarker } from "./output_dir.ts";
import { copyTokenizerFiles } from "./tokenizer.ts";

/** What {@link writeHfModel} writes: the model's outer weights and a source of its blocks. */
export interface HfModelSource {
  /** The architecture, config (written as config.json) and outer weights. */
  model: Pick<ModelHandle, "arch" | "cfg" | "outer">;
  /** Block `i`'s weights; the writer disposes them once written. */
  block(i: number): Promise<WeightMap>;
  /** tokenizer.json to copy (a tokenizer_config.json beside it is copied too). */
  tokenizer: string;
}

/** Options of {@link writeHfModel}. */
export interface WriteHfModelOptions {
  /** The verb the output marker names (so that verb may replace it later: src/io/output_dir.ts). */
  writtenBy: string;
  /** Store the weights as float16 (default float32). */
  fp16?: boolean;
  /** Receives a `write` event per block written (`done`/`total` in blocks, its seconds). */
  events?: StageEvents;
}

/**
 * Writes a complete Hugging Face checkpoint to `out`: config.json, the
 * weights (F32, or F16 with `fp16`), tokenizer.json (+ tokenizer_config.json)
 * and the {@link OUTPUT_MARKER} naming the verb `writtenBy`, all built in a
 * temporary sibling directory and renamed into place (replacing an existing
 * `out` only then). One block is resident at a time.
 *
 * @throws Error when a weight has no Hugging Face layout (e.g. a compressed
 *   block) or another shape than config.json implies
 */
export async function writeHfModel(out: string, source: HfModelSource, options: WriteHfModelOptions): Promise<void> {
  const { arch, cfg, outer } = source.model;
  async function* tensors(): AsyncGenerator<TensorToSave> {
    yield* toHfTensors(arch, cfg, "outer", outer);
    for (let i = 0; i < cfg.layers; i++) {
      const started = performance.now();
      const weights = await source.block(i);
      try {
        yield* toHfTensors(arch, cfg, i, weights); // encoded (copied) by the writer before the next is asked for
      } finally {
        tf.dispose([...weights.values()]);
      }
      options.events?.next({
        stage: "write",
        block: i,
        done: i + 1,
        total: cfg.layers,
        unit: "blocks",
        seconds: (performance.now() - started) / 1000,
      });
    }
  }
  const tx = createDirectoryTransaction(out);
  try {
    const config = { ...cfg.raw, torch_dtype: options.fp16 ? "float16" : "float32" };
    await saveCheckpoint(tx.temp, config, tensors(), { dtype: options.fp16 ? "F16" : "F32" });
    await copyTokenizerFiles(source.tokenizer, tx.temp);
    await writeFileAtomic(join(tx.temp, OUTPUT_MARKER), new TextEncoder().encode(outputMarker(options.writtenBy)));
    await tx.commit();
  } catch (e) {
    await tx.abort();
    throw e;
  }
}
