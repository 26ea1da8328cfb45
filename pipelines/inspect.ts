/**
 * `offtune inspect <checkpoint>`: what a Hugging Face checkpoint holds — its
 * architecture, blocks, parameter counts and stored dtypes — checked against
 * the architecture's expected names and shapes without loading any weights
 * (`inspectCheckpoint` of mod.ts; a config that disagrees with the weights is
 * an error, as when a verb opens the checkpoint: docs/GUARANTEES.md "What is
 * verified").
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatCheckpointSummary, inspectCheckpoint } from "../mod.ts";

/** Help text for the verb. */
export const help = `offtune inspect <checkpoint-dir> [--json]

Prints the architecture, block count, widths, parameter counts (embeddings,
per block, head) and stored dtypes of a Hugging Face checkpoint
(config.json + model.safetensors or a sharded model.safetensors.index.json).
Reads only headers: no weight is loaded.

  --json   print the summary as JSON instead of text`;

/** CLI entry: `offtune inspect <dir> [--json]`. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new Error(`Expected one checkpoint directory, got ${positionals.length}`);
  }
  const summary = await inspectCheckpoint(positionals[0]);
  console.log(values.json ? JSON.stringify(summary, null, 2) : formatCheckpointSummary(summary));
  return 0;
}
