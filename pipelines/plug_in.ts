/**
 * `offtune plug-in`: the model owner's last step (docs/METHOD.md §1 step 3). Puts
 * the tuned adapter returned by the data owner into the original model and
 * writes the result as a complete Hugging Face checkpoint (config.json,
 * model.safetensors, tokenizer), built in a temporary directory and renamed
 * into place. The adapter must name this model (source hash) and this
 * adapter/emulator split, else `withAdapter` refuses it.
 *
 * Also exports {@link writeHfModel}, which `offtune full-ft` uses too.
 *
 * @module
 */
import { join } from "node:path";
import process from "node:process";
import { createProgress } from "../src/cli/progress.ts";
import { createDirectoryTransaction, writeFileAtomic } from "../src/io/atomic.ts";
import { saveCheckpoint, type TensorToSave } from "../src/io/checkpoint.ts";
import { checkOutputDir, OUTPUT_MARKER, outputMarker } from "../src/io/output_dir.ts";
import { removeStaleTemporaries } from "../src/io/stale_temps.ts";
import { copyTokenizerFiles } from "../src/io/tokenizer.ts";
import { toHfTensors } from "../src/model/load.ts";
import type { WeightMap } from "../src/model/types.ts";
import { DEFAULT_SPLIT, openModel } from "../src/operators/model_handle.ts";
import { withAdapter } from "../src/operators/model_source.ts";
import type { ModelHandle } from "../src/records/records.ts";
import { initBackend, tf } from "../src/tensor/backend.ts";
import { splitFlag } from "./build_emulator.ts";
import { parseVerbFlags } from "./flags.ts";
import { tokenizerFor } from "./tokenizer_for.ts";

/** What {@link writeHfModel} writes: the model's outer weights and a source of its blocks. */
export interface HfModelSource {
  model: Pick<ModelHandle, "arch" | "cfg" | "outer">;
  /** Block `i`'s weights; the writer disposes them once written. */
  block(i: number): Promise<WeightMap>;
  /** tokenizer.json to copy (a tokenizer_config.json beside it is copied too). */
  tokenizer: string;
  /** Called after each block is written. */
  onBlock?: (i: number) => void;
}

/**
 * Writes a complete Hugging Face checkpoint to `out`: config.json, the
 * weights (F32, or F16 with `fp16`), tokenizer.json (+ tokenizer_config.json)
 * and the {@link OUTPUT_MARKER} naming the verb `writtenBy` (so that verb may
 * replace it later: src/io/output_dir.ts), all built in a temporary sibling
 * directory and renamed into place (replacing an existing `out` only then).
 * One block is resident at a time.
 *
 * @throws Error when a weight has no Hugging Face layout (e.g. a compressed
 *   block) or another shape than config.json implies
 */
export async function writeHfModel(
  out: string,
  source: HfModelSource,
  options: { writtenBy: string; fp16?: boolean },
): Promise<void> {
  const { arch, cfg, outer } = source.model;
  async function* tensors(): AsyncGenerator<TensorToSave> {
    yield* toHfTensors(arch, cfg, "outer", outer);
    for (let i = 0; i < cfg.layers; i++) {
      const weights = await source.block(i);
      try {
        yield* toHfTensors(arch, cfg, i, weights); // encoded (copied) by the writer before the next is asked for
      } finally {
        tf.dispose([...weights.values()]);
      }
      source.onBlock?.(i);
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

/** Help text for the verb. */
export const help = `offtune plug-in --model <original> --adapter <dir> --out <dir> [flags]

Plugs a tuned adapter package into the original model (docs/METHOD.md §1 step 3)
and writes the plug-in model as a Hugging Face checkpoint (config.json,
model.safetensors, tokenizer.json, offtune_output.json) to --out,
atomically. Refuses an adapter tuned for another model or another
adapter/emulator split, and an unfinished one (an epoch checkpoint).

--out must not exist, be empty, or hold a checkpoint written by offtune
plug-in; anything else is refused unless --force, which replaces it once the
new checkpoint is complete. --out may never be, hold or lie inside an input.

  --model <dir>          the original checkpoint the emulator was built from
  --adapter <dir>        adapter package written by offtune tune
  --out <dir>            output checkpoint directory
  --force                replace whatever --out holds (atomically)
  --allow-unfinished     plug in an unfinished adapter anyway
  --split <b,t>          the model's adapter blocks (default ${DEFAULT_SPLIT.bottom},${DEFAULT_SPLIT.top}, as build-emulator)
  --tokenizer <file>     tokenizer.json to copy (default: the model's own, else
                         the offtune default)
  --fp16                 store the weights as float16
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress or summary`;

const FLAGS = {
  model: { type: "string" },
  adapter: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean", default: false },
  "allow-unfinished": { type: "boolean", default: false },
  split: { type: "string" },
  tokenizer: { type: "string" },
  fp16: { type: "boolean", default: false },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "plug-in", ["model", "adapter", "out"]);
  const split = splitFlag(flags.split) ?? DEFAULT_SPLIT;
  await checkOutputDir({
    verb: "plug-in",
    flag: "out",
    path: flags.out,
    kind: { marker: true },
    inputs: { model: flags.model, adapter: flags.adapter, tokenizer: flags.tokenizer },
    force: flags.force,
  });
  removeStaleTemporaries([flags.out]);
  await initBackend(flags.backend, flags.quiet);
  const base = await openModel(flags.model, { split });
  try {
    const plugged = await withAdapter(base, flags.adapter, { allowUnfinished: flags["allow-unfinished"] });
    const { path } = await tokenizerFor(flags.model, base.cfg, flags.tokenizer, flags.quiet);
    const progress = createProgress("plug-in", flags.quiet);
    const layers = base.cfg.layers;
    await writeHfModel(flags.out, {
      model: plugged,
      block: (i) => plugged.loadBlock(i),
      tokenizer: path,
      onBlock: (i) => progress.update({ done: i + 1, total: layers, unit: "blocks" }),
    }, { writtenBy: "plug-in", fp16: flags.fp16 });
    progress.finish(`${layers} blocks`);
    if (!flags.quiet) console.error(`plug-in: wrote ${flags.out} (${flags.model} + ${flags.adapter})`);
    return 0;
  } finally {
    await base.close();
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith("plug_in.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
