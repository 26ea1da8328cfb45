/**
 * `offtune sweep-gradot`: chooses GradOT's λ_attn, λ_mlp (and the attention
 * share of the budget) on a model by adapter-gradient cosine (utility) and
 * the emulator's extra NLL (privacy), ranked by their product
 * (`sweepGradot` of mod.ts; its module notes define the figures).
 *
 * @module
 */
import { writeFile } from "node:fs/promises";
import { initBackend, openModel, readTokenStream, sweepGradot } from "../mod.ts";
import { fractionFlag, nonNegativeFlag, parseVerbFlags, positiveIntFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune sweep-gradot --model <checkpoint> [flags]

Sweeps GradOT's λ_attn × λ_mlp (× attention share) at one emulator ratio and
prints, per setting, the adapter-gradient cosine (emulator vs original) and
the emulator's extra NLL on held-out text; ranks by their product.

  --model <dir>          checkpoint (with calibration and valid streams below)
  --calibration <file>   Uint16 token stream (default fixtures/data/pretrain/calibration.bin)
  --valid <file>         Uint16 held-out stream (default fixtures/data/pretrain/valid.bin)
  --ratio <x>            emulator ratio (default 0.5)
  --lambdas <list>       λ values ≥ 0 for both λ_attn and λ_mlp (default 0,0.1,1,10)
  --shares <list>        attention shares of the removed parameters (default: neutral only)
  --sequences <n>        calibration sequences (default 32)
  --valid-windows <n>    held-out windows of 128 tokens (default 32)
  --json <file>          write the table as JSON`;

const FLAGS = {
  model: { type: "string" },
  calibration: { type: "string", default: "fixtures/data/pretrain/calibration.bin" },
  valid: { type: "string", default: "fixtures/data/pretrain/valid.bin" },
  ratio: { type: "string", default: "0.5" },
  lambdas: { type: "string", default: "0,0.1,1,10" },
  shares: { type: "string" },
  sequences: { type: "string", default: "32" },
  "valid-windows": { type: "string", default: "32" },
  json: { type: "string" },
  backend: { type: "string" },
} as const;

/** A comma-separated list flag, each value read (and range-checked) by `read`. */
function list(value: string, flag: string, read: (v: string, flag: string) => number | undefined): number[] {
  return value.split(",").map((v) => read(v, flag)!);
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "sweep-gradot", ["model"]);
  const ratio = fractionFlag(flags.ratio, "ratio")!;
  const lambdas = list(flags.lambdas, "lambdas", nonNegativeFlag);
  const shares = flags.shares ? list(flags.shares, "shares", (v, flag) => fractionFlag(v, flag, true)) : undefined;
  const sequences = positiveIntFlag(flags.sequences, "sequences")!;
  const validWindows = positiveIntFlag(flags["valid-windows"], "valid-windows")!;
  await initBackend(flags.backend, true);
  const model = await openModel(flags.model);
  try {
    console.log(`ratio ${ratio}; λ_attn  λ_mlp  share   cos      Δnll     cos·Δnll`);
    const { original, rows, best } = await sweepGradot(model, {
      calibration: readTokenStream(flags.calibration),
      valid: readTokenStream(flags.valid),
      ratio,
      lambdas,
      shares,
      sequences,
      validWindows,
      onRow: (row) =>
        console.log(
          `${String(row.lambdaAttn).padEnd(7)} ${String(row.lambdaMlp).padEnd(6)} ${String(row.attnShare ?? "-").padEnd(7)} ` +
            `${row.cos.toFixed(4)}   ${row.deltaNll.toFixed(4)}   ${row.score.toFixed(4)}`,
        ),
    });
    console.log(`original NLL ${original.nll.toFixed(4)} (ppl ${original.ppl.toFixed(2)}) on ${original.tokens} held-out tokens`);
    console.log(`best: λ_attn ${best.lambdaAttn}, λ_mlp ${best.lambdaMlp}, share ${best.attnShare ?? "neutral"}`);
    if (flags.json) {
      await writeFile(flags.json, JSON.stringify({ model: flags.model, ratio, original, rows, best }, null, 2) + "\n");
    }
    return 0;
  } finally {
    await model.close();
  }
}
