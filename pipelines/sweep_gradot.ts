/**
 * `offtune sweep-gradot`: chooses GradOT's λ_attn, λ_mlp (and the attention
 * share of the budget) on a model by the two things an emulator must do
 * (docs/METHOD.md §2): keep the adapter's gradients (utility) and be a poor model
 * on its own (privacy). For each setting it reports
 * - `cos`: cosine between the adapter blocks' loss gradient through the
 *   emulator and through the original model, on held-out windows;
 * - `Δnll`: emulator NLL − original NLL on held-out text (nats/token);
 * and ranks settings by `cos · Δnll` (both wanted large). The calibration
 * pass (forward, backward, KFAC) runs once; only scoring and compression are
 * repeated per setting.
 *
 * @module
 */
import { from, lastValueFrom, toArray } from "rxjs";
import type { Tensor } from "@tensorflow/tfjs";
import { calibrationFromTokens } from "../src/data/calibration.ts";
import { readTokenStream } from "../src/data/token_stream.ts";
import { modelPerplexity } from "../src/eval/perplexity.ts";
import { forwardLogits, lmLoss } from "../src/model/forward.ts";
import type { WeightMap } from "../src/model/types.ts";
import { accumulateKfac } from "../src/operators/accumulate_kfac.ts";
import { calibrateBackward } from "../src/operators/calibrate_backward.ts";
import { calibrateForward } from "../src/operators/calibrate_forward.ts";
import { compressDrd } from "../src/operators/compress_drd.ts";
import { compressScp } from "../src/operators/compress_scp.ts";
import { cloneWeights, memoryModel } from "../src/operators/memory_model.ts";
import { openModel } from "../src/operators/model_handle.ts";
import { readCheckpoint } from "../src/operators/read_checkpoint.ts";
import { scoreGcs } from "../src/operators/score_gcs.ts";
import { disposeWeights } from "../src/operators/weights.ts";
import type { ModelHandle, StatsRecord } from "../src/records/records.ts";
import { initBackend, tf } from "../src/tensor/backend.ts";
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

/** One row of the sweep. */
export interface SweepRow {
  lambdaAttn: number;
  lambdaMlp: number;
  attnShare: number | null;
  cos: number;
  deltaNll: number;
  score: number;
}

/** A comma-separated list flag, each value read (and range-checked) by `read`. */
function list(value: string, flag: string, read: (v: string, flag: string) => number | undefined): number[] {
  return value.split(",").map((v) => read(v, flag)!);
}

/** The flat gradient of the mean LM loss w.r.t. the adapter blocks' weights. */
function adapterGradient(model: ModelHandle, blocks: WeightMap[], ids: Tensor): Float32Array {
  const adapter = blocks.flatMap((b, i) =>
    i < model.split.bottom || i >= model.cfg.layers - model.split.top ? [...b.keys()].map((k) => ({ i, k })) : []
  );
  const grads = tf.grads((...ws: Tensor[]) => {
    const replaced = blocks.map((b) => new Map(b));
    adapter.forEach(({ i, k }, j) => replaced[i].set(k, ws[j]));
    return lmLoss(forwardLogits(model.arch, model.cfg, model.outer, replaced, ids), ids);
  })(adapter.map(({ i, k }) => blocks[i].get(k)!));
  const flat = new Float32Array(grads.reduce((n, g) => n + g.size, 0));
  let at = 0;
  for (const g of grads) {
    flat.set(g.dataSync() as Float32Array, at);
    at += g.size;
  }
  tf.dispose(grads);
  return flat;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "sweep-gradot", ["model"]);
  const ratio = fractionFlag(flags.ratio, "ratio")!;
  const lambdas = list(flags.lambdas, "lambdas", nonNegativeFlag);
  const shares: Array<number | undefined> = flags.shares
    ? list(flags.shares, "shares", (v, flag) => fractionFlag(v, flag, true))
    : [undefined];
  const sequences = positiveIntFlag(flags.sequences, "sequences")!;
  const windows = positiveIntFlag(flags["valid-windows"], "valid-windows")!;
  await initBackend(flags.backend, true);
  const model = await openModel(flags.model);
  const length = Math.min(128, model.cfg.maxPositions);
  const calibration = calibrationFromTokens(readTokenStream(flags.calibration), sequences, length, flags.calibration);
  const valid = readTokenStream(flags.valid);
  const heldOut = valid.subarray(0, windows * length + 1);
  const gradIds = tf.tensor2d(calibrationFromTokens(valid, Math.min(windows, 16), length, flags.valid).ids, [Math.min(windows, 16), length], "int32");

  const stats: StatsRecord[] = await lastValueFrom(
    readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward(), accumulateKfac(), toArray()),
  );
  stats.sort((a, b) => a.index - b.index);
  const original = stats.map((s) => s.weights);
  const reference = adapterGradient(model, original, gradIds);
  const originalModel = memoryModel(model, original.map(cloneWeights));
  const base = await modelPerplexity(originalModel, heldOut, { ctx: length });
  await originalModel.close();

  const rows: SweepRow[] = [];
  console.log(`original NLL ${base.nll.toFixed(4)} (ppl ${base.ppl.toFixed(2)}) on ${base.tokens} held-out tokens; ratio ${ratio}`);
  console.log("λ_attn  λ_mlp  share   cos      Δnll     cos·Δnll");
  for (const attnShare of shares) {
    for (const lambdaAttn of lambdas) {
      for (const lambdaMlp of lambdas) {
        // scoreGcs consumes the weights and empties `stats`: each setting scores copies.
        const records = stats.map((s) => ({ ...s, weights: cloneWeights(s.weights), stats: new Map(s.stats) }));
        const compressed = await lastValueFrom(
          from(records).pipe(
            scoreGcs({ lambdaAttn, lambdaMlp }),
            compressDrd({ ratio, attnShare }),
            compressScp({ ratio, attnShare }),
            toArray(),
          ),
        );
        const blocks = compressed.sort((a, b) => a.index - b.index).map((r) => r.weights);
        const emulator = memoryModel(model, blocks);
        const cos = cosine(adapterGradient(model, blocks, gradIds), reference);
        const { nll } = await modelPerplexity(emulator, heldOut, { ctx: length });
        await emulator.close();
        const row = { lambdaAttn, lambdaMlp, attnShare: attnShare ?? null, cos, deltaNll: nll - base.nll, score: cos * (nll - base.nll) };
        rows.push(row);
        console.log(
          `${String(lambdaAttn).padEnd(7)} ${String(lambdaMlp).padEnd(6)} ${String(attnShare ?? "-").padEnd(7)} ` +
            `${cos.toFixed(4)}   ${row.deltaNll.toFixed(4)}   ${row.score.toFixed(4)}`,
        );
      }
    }
  }
  const best = rows.reduce((a, b) => (b.score > a.score ? b : a));
  console.log(`best: λ_attn ${best.lambdaAttn}, λ_mlp ${best.lambdaMlp}, share ${best.attnShare ?? "neutral"}`);
  if (flags.json) {
    const { writeFile } = await import("node:fs/promises");
    await writeFile(flags.json, JSON.stringify({ model: flags.model, ratio, original: base, rows, best }, null, 2) + "\n");
  }
  original.forEach(disposeWeights);
  gradIds.dispose();
  await model.close();
  return 0;
}
