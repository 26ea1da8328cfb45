/**
 * Example: GradOT composed by hand from its operators (docs/DESIGN.md "The
 * shape"), the same chain `buildGradotEmulator` runs, written out so each
 * stage can be swapped or inspected.
 *
 *     npx tsx pipelines/examples/gradot_by_hand.ts [out-dir]
 *     npx deno run -A pipelines/examples/gradot_by_hand.ts [out-dir]
 *
 * Builds a GradOT emulator of fixtures/tiny (4 blocks: 1 + 1 adapter blocks,
 * 2 middle blocks compressed to half their parameters) from 8 calibration
 * sequences of 32 tokens, then opens the package and prints each block's
 * stored parameters. Without `out-dir` the package goes to a temporary
 * directory that is removed at the end.
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { lastValueFrom, toArray } from "rxjs";
import {
  accumulateKfac,
  blockRole,
  calibrateBackward,
  calibrateForward,
  calibrationFromTokens,
  compressDrd,
  compressScp,
  GRADOT_DEFAULTS,
  initBackend,
  openModel,
  openPackage,
  readCheckpoint,
  scoreGcs,
  writeShards,
} from "../../mod.ts";

await initBackend(undefined, true);
const out = process.argv[2] ?? join(mkdtempSync(join(tmpdir(), "offtune-example-")), "emulator");

// The calibration text: a Uint16 token stream in the model's vocabulary.
const bytes = readFileSync("fixtures/data/pretrain/calibration.bin");
const tokens = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const calibration = calibrationFromTokens(tokens, 8, 32); // N = 8 sequences of T = 32 tokens

const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
const ratio = 0.5; // compressed middle parameters / original middle parameters
const shards = await lastValueFrom(
  readCheckpoint(model).pipe(
    calibrateForward({ calibration }), // keeps each block's input [N, T, d] on disk
    calibrateBackward(), // reverse order: per-linear inputs x and output gradients γ
    accumulateKfac(), // A = mean x xᵀ, G = mean γ γᵀ, g = ∂ℓ/∂W per linear (a ReLU MLP: channel products instead)
    scoreGcs({ lambdaAttn: GRADOT_DEFAULTS.lambdaAttn, lambdaMlp: GRADOT_DEFAULTS.lambdaMlp }),
    compressDrd({ ratio }), // attention projections → low-rank factors
    compressScp({ ratio }), // MLP → the channels of largest GCS
    writeShards(out, { method: "gradot", settings: { ...GRADOT_DEFAULTS, ratio } }),
    toArray(),
  ),
);
await model.close();
console.log(`wrote ${shards.length} shards to ${out}`);

const emulator = await openPackage(out);
for (const i of emulator.blockIndices) {
  const weights = await emulator.loadBlock(i);
  const params = [...weights.values()].reduce((n, t) => n + t.size, 0);
  console.log(`block ${i} (${blockRole(i, emulator.cfg.layers, emulator.split)}): ${params} parameters`);
  for (const t of weights.values()) t.dispose();
}
await emulator.close();
if (process.argv[2] === undefined) rmSync(join(out, ".."), { recursive: true, force: true });
