#!/usr/bin/env -S npx tsx
/**
 * Standalone throughput measurement for sizing the pretraining run (not a
 * test): tokens/s of training an OPT at 1 and 2 workers on this machine.
 *
 *   npx tsx test/train/throughput.ts [--layers 12] [--hidden 256] [--ctx 128]
 *     [--batch 16] [--micro-batch 4] [--vocab 16384] [--workers 1,2] [--steps 3]
 *
 * Prints one JSON line per worker count, with the 1-minute load average
 * before and after (the cores are shared).
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { initBackend } from "../../src/tensor/backend.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { measureThroughput } from "../../src/train/throughput.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: Object.fromEntries(
    ["layers", "hidden", "ctx", "batch", "micro-batch", "vocab", "workers", "steps"].map((
      k,
    ) => [k, { type: "string" as const }]),
  ),
});
const num = (key: string, fallback: number) => (values[key] === undefined ? fallback : Number(values[key]));
const hidden = num("hidden", 256);
const ctx = num("ctx", 128);
const config = optConfigJson({
  layers: num("layers", 12),
  hidden,
  heads: Math.max(1, hidden / 64),
  ffn: 4 * hidden,
  maxPositions: ctx,
  vocabSize: num("vocab", 16384),
  bosId: 2,
  eosId: 2,
  padId: 1,
});
const backend = await initBackend(undefined, true);
for (const workers of String(values.workers ?? "1,2").split(",").map(Number)) {
  const batch = num("batch", 16);
  const microBatch = num("micro-batch", 4);
  const r = await measureThroughput({ config, batch, ctx, workers, microBatch, steps: num("steps", 3) });
  console.log(
    JSON.stringify({ backend, layers: config.num_hidden_layers, hidden, ctx, vocab: config.vocab_size, batch, ...r }),
  );
}
