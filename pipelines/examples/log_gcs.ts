/**
 * Example: a `tap` in the GradOT chain that logs each middle block's GCS
 * (docs/METHOD.md §2) right after `scoreGcs`, without changing what flows:
 * per attention projection the spread of its SVD components' scores, per
 * MLP the spread of its channels' scores, and how many are negative (those
 * whose λ-weighted loss increase outweighs the gradient shift: compression
 * applies the perturbations of smallest GCS first).
 *
 *     npx tsx pipelines/examples/log_gcs.ts
 *     npx deno run -A pipelines/examples/log_gcs.ts
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, tap, toArray } from "rxjs";
import {
  accumulateKfac,
  calibrateBackward,
  calibrateForward,
  calibrationFromTokens,
  compressDrd,
  compressScp,
  GRADOT_DEFAULTS,
  initBackend,
  openModel,
  readCheckpoint,
  type ScoredBlockRecord,
  scoreGcs,
  writeShards,
} from "../../mod.ts";

/** `min / median / max (negative count)` of `scores`. */
function spread(scores: Float32Array): string {
  const sorted = Float32Array.from(scores).sort();
  const negative = sorted.filter((v) => v < 0).length;
  const f = (v: number) => v.toExponential(2);
  return `${f(sorted[0])} / ${f(sorted[sorted.length >> 1])} / ${f(sorted[sorted.length - 1])} ` +
    `(${negative} of ${sorted.length} negative)`;
}

/** Logs the GCS of every scored middle block; passes records on untouched. */
const logGcs = () =>
  tap((record: ScoredBlockRecord) => {
    if (record.role !== "middle") return;
    console.log(`block ${record.index}`);
    for (const [linear, { scores }] of record.drd) console.log(`  DRD ${linear.padEnd(18)} ${spread(scores)}`);
    if (record.scp) console.log(`  SCP ${"MLP channels".padEnd(18)} ${spread(record.scp)}`);
  });

await initBackend(undefined, true);
const dir = mkdtempSync(join(tmpdir(), "offtune-example-"));
const bytes = readFileSync("fixtures/data/pretrain/calibration.bin");
const tokens = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const calibration = calibrationFromTokens(tokens, 8, 32);
const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
const shards = await lastValueFrom(
  readCheckpoint(model).pipe(
    calibrateForward({ calibration }),
    calibrateBackward(),
    accumulateKfac(),
    scoreGcs({ lambdaAttn: GRADOT_DEFAULTS.lambdaAttn, lambdaMlp: GRADOT_DEFAULTS.lambdaMlp }),
    logGcs(), // ← the tap
    compressDrd({ ratio: 0.5 }),
    compressScp({ ratio: 0.5 }),
    writeShards(join(dir, "emulator"), { method: "gradot", settings: { ratio: 0.5 } }),
    toArray(),
  ),
);
console.log(`${shards.length} shards written`);
await model.close();
rmSync(dir, { recursive: true, force: true });
