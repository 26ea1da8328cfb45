/**
 * Example: a compressor of one's own in the GradOT chain. `magnitudePrune`
 * replaces `compressScp` between `scoreGcs` and `writeShards`: it keeps the
 * MLP channels of largest weight magnitude `‖W₁[:, j]‖₂ · ‖W₂[j, :]‖₂`
 * (a magnitude-pruning baseline) instead of those of largest GCS, and says
 * how many of its channels GCS would have kept too (blocks arrive in the
 * backward pass's reverse order). Any operator that takes and returns
 * `ScoredBlockRecord`s fits there (docs/DESIGN.md "The shape").
 *
 *     npx tsx pipelines/examples/custom_compressor.ts
 *     npx deno run -A pipelines/examples/custom_compressor.ts
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, map, type OperatorFunction, toArray } from "rxjs";
import {
  accumulateKfac,
  calibrateBackward,
  calibrateForward,
  calibrationFromTokens,
  compressDrd,
  GRADOT_DEFAULTS,
  initBackend,
  openModel,
  openPackage,
  readCheckpoint,
  type ScoredBlockRecord,
  scoreGcs,
  tf,
  writeShards,
} from "../../mod.ts";

/** Indices of the `k` largest entries of `values`, ascending. */
function topK(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k)
    .sort((a, b) => a - b);
}

/** Keeps `keep` of every middle block's MLP channels, chosen by weight magnitude. */
function magnitudePrune(keep: number): OperatorFunction<ScoredBlockRecord, ScoredBlockRecord> {
  return map((record) => {
    if (record.role !== "middle") return record;
    const { weights, model } = record;
    const linears = model.arch.linears(model.cfg);
    // Producers of the m channels (fc1; gate and up on SwiGLU) and their consumer (fc2, down).
    const producers = linears.filter((l) => l.role === "mlp.in" || l.role === "mlp.gate" || l.role === "mlp.up");
    const consumer = linears.find((l) => l.role === "mlp.out")!;
    const importance = tf.tidy(() => {
      const outNorm = tf.norm(weights.get(`${consumer.name}.weight`)!, "euclidean", 1); // [m] from [m, d]
      const inNorms = producers.map((l) => tf.norm(weights.get(`${l.name}.weight`)!, "euclidean", 0)); // [m] from [d, m]
      return inNorms.reduce((acc, n) => tf.mul(acc, n), outNorm).dataSync() as Float32Array; // [m]
    });
    const width = Math.round(keep * importance.length);
    const kept = topK(importance, width);
    const byGcs = new Set(topK(record.scp!, width));
    console.log(
      `block ${record.index}: kept ${width} of ${importance.length} channels by magnitude; ` +
        `${kept.filter((j) => byGcs.has(j)).length} of them are also among GCS's top ${width}`,
    );
    const index = tf.tensor1d(kept, "int32");
    const replace = (name: string, axis: number) => {
      const old = weights.get(name);
      if (!old) return;
      weights.set(name, tf.gather(old, index, axis));
      old.dispose();
    };
    for (const l of producers) {
      replace(`${l.name}.weight`, 1); // [d, m] → [d, m']
      replace(`${l.name}.bias`, 0); // [m] → [m']
    }
    replace(`${consumer.name}.weight`, 0); // [m, d] → [m', d]
    index.dispose();
    return { ...record, scp: undefined, compression: { ...record.compression, width } };
  });
}

await initBackend(undefined, true);
const dir = mkdtempSync(join(tmpdir(), "offtune-example-"));
const out = join(dir, "emulator");
const bytes = readFileSync("fixtures/data/pretrain/calibration.bin");
const tokens = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const calibration = calibrationFromTokens(tokens, 8, 32);

const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
await lastValueFrom(
  readCheckpoint(model).pipe(
    calibrateForward({ calibration }),
    calibrateBackward(),
    accumulateKfac(),
    scoreGcs({ lambdaAttn: GRADOT_DEFAULTS.lambdaAttn, lambdaMlp: GRADOT_DEFAULTS.lambdaMlp }),
    compressDrd({ ratio: 0.5 }),
    magnitudePrune(0.5), // ← the custom stage, where compressScp would be
    writeShards(out, { method: "gradot-drd+magnitude-mlp", settings: { ratio: 0.5, mlpKeep: 0.5 } }),
    toArray(),
  ),
);
await model.close();

// The package opens like any other emulator; its middle MLPs are half as wide.
const emulator = await openPackage(out);
const block = await emulator.loadBlock(1);
console.log(`block 1 fc1.weight is now [${block.get("fc1.weight")!.shape.join(", ")}]`);
for (const t of block.values()) t.dispose();
await emulator.close();
rmSync(dir, { recursive: true, force: true });
