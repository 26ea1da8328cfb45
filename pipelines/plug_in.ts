/**
 * `offtune plug-in`: the model owner's last step (docs/METHOD.md §1 step 3). Puts
 * the tuned adapter returned by the data owner into the original model and
 * writes the result as a complete Hugging Face checkpoint (config.json,
 * model.safetensors, tokenizer), built in a temporary directory and renamed
 * into place (`plugIn` of mod.ts).
 *
 * @module
 */
import process from "node:process";
import { checkOutputDir, DEFAULT_SPLIT, initBackend, plugIn, removeStaleTemporaries } from "../mod.ts";
import { createProgress, progressEvents } from "../src/cli/progress.ts";
import { parseVerbFlags, splitFlag } from "./flags.ts";

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
  const progress = createProgress("plug-in", flags.quiet);
  await plugIn({
    model: flags.model,
    adapter: flags.adapter,
    out: flags.out,
    split,
    allowUnfinished: flags["allow-unfinished"],
    tokenizer: flags.tokenizer,
    fp16: flags.fp16,
    quiet: flags.quiet,
    events: progressEvents(progress),
  });
  progress.finish("done");
  if (!flags.quiet) console.error(`plug-in: wrote ${flags.out} (${flags.model} + ${flags.adapter})`);
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("plug_in.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
