/**
 * The model owner's last step (docs/METHOD.md §1 step 3) as one call: put the
 * tuned adapter returned by the data owner into the original model and write
 * the result as a complete Hugging Face checkpoint (`offtune plug-in`). The
 * adapter must name this model (source hash) and this adapter/emulator split,
 * and be finished, else `withAdapter` refuses it. The output is marked as
 * plug-in's (src/io/output_dir.ts); checking `out` before the work is the
 * caller's (`checkOutputDir`).
 *
 * @module
 */
import type { StageEvents } from "../events/stage_events.ts";
import { writeHfModel } from "../io/hf_model_writer.ts";
import { tokenizerFor } from "../io/tokenizer_for.ts";
import { DEFAULT_SPLIT, openModel } from "../model/model_handle.ts";
import { withAdapter } from "../model/model_source.ts";
import type { AdapterSplit } from "../records/records.ts";

/** What {@link plugIn} plugs and where it writes. */
export interface PlugInOptions {
  /** The original checkpoint the emulator was built from. */
  model: string;
  /** The adapter package `offtune tune` (or `tuneAdapter`) wrote. */
  adapter: string;
  /** The output checkpoint directory (written atomically). */
  out: string;
  /** The model's adapter blocks (default {@link DEFAULT_SPLIT}, as the emulator build's). */
  split?: AdapterSplit;
  /** Plug in an unfinished adapter (an epoch checkpoint) instead of refusing it. */
  allowUnfinished?: boolean;
  /** tokenizer.json to copy (default: the model's own, else the fixture one; `tokenizerFor`). */
  tokenizer?: string;
  /** Store the weights as float16. */
  fp16?: boolean;
  /** No notice when the fixture tokenizer is used. */
  quiet?: boolean;
  /** Receives a `write` event per block written. */
  events?: StageEvents;
}

/** Writes the original model with the tuned adapter plugged in to `options.out` (module notes). */
export async function plugIn(options: PlugInOptions): Promise<void> {
  const base = await openModel(options.model, { split: options.split ?? DEFAULT_SPLIT });
  try {
    const plugged = await withAdapter(base, options.adapter, { allowUnfinished: options.allowUnfinished ?? false });
    const { path } = await tokenizerFor(options.model, base.cfg, options.tokenizer, options.quiet ?? false);
    await writeHfModel(options.out, { model: plugged, block: (i) => plugged.loadBlock(i), tokenizer: path }, {
      writtenBy: "plug-in",
      fp16: options.fp16,
      events: options.events,
    });
  } finally {
    await base.close();
  }
}
