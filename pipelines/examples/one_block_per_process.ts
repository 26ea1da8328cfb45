/**
 * Example: one transformer block per process, the way to stream a model
 * larger than memory (docs/DESIGN.md "Scale"). The LM loss of fixtures/tiny
 * on 4 calibration sequences is computed with each block in a short-lived
 * process of its own: the driver embeds the tokens and writes the hidden
 * states `[B, T, d]` to a file; `block <i>` loads only block i's weights
 * (the vocabulary matrices stay in the checkpoint), runs it and writes the
 * hidden states back; the driver applies the head. No block process holds
 * more than one block. The driver then checks the result against the same
 * loss computed in one process with every block resident.
 *
 *     npx tsx pipelines/examples/one_block_per_process.ts                   # driver
 *     npx deno run -A pipelines/examples/one_block_per_process.ts           # driver
 *     npx tsx pipelines/examples/one_block_per_process.ts block <work> 2    # block 2 alone
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { calibrationFromTokens, forwardLogits, initBackend, lmLoss, openModel, tf, type WeightMap } from "../../mod.ts";

const MODEL = "fixtures/tiny";
const SPLIT = { bottom: 1, top: 1 }; // tiny has 4 blocks; the default 2 + 2 would leave no middle
const [B, T] = [4, 32]; // sequences × tokens

/** The calibration ids `[B, T]` every step agrees on. */
function tokenIds(): Int32Array {
  const bytes = readFileSync("fixtures/data/pretrain/calibration.bin");
  const tokens = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return calibrationFromTokens(tokens, B, T).ids;
}

const hiddenFile = (work: string) => join(work, "hidden.f32");
const saveHidden = (work: string, h: tf.Tensor) => writeFileSync(hiddenFile(work), h.dataSync() as Float32Array);
function loadHidden(work: string, d: number): tf.Tensor {
  const bytes = readFileSync(hiddenFile(work));
  return tf.tensor3d(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), [B, T, d]);
}

/** One block's step, in its own process: read the hidden states, run block `i`, write them back. */
async function blockStep(work: string, i: number): Promise<void> {
  await initBackend(undefined, true);
  // The vocabulary matrices stay in the file: this process holds one block and nothing else.
  const model = await openModel(MODEL, { split: SPLIT, streamVocabulary: true });
  const weights = await model.loadBlock(i);
  saveHidden(work, model.arch.block(weights, loadHidden(work, model.cfg.hidden), model.cfg)); // [B, T, d] → [B, T, d]
  await model.close();
}

/** Runs block `i`'s step as a child process of the same runtime (Node through tsx, or Deno). */
function runBlock(work: string, i: number): void {
  const script = fileURLToPath(import.meta.url);
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  const [command, prefix] = deno ? [deno.execPath(), ["run", "-A"]] : [process.execPath, process.execArgv];
  const result = spawnSync(command, [...prefix, script, "block", work, String(i)], { stdio: "inherit" });
  if (result.status !== 0) throw new Error(`The process of block ${i} exited with ${result.status}`);
}

if (process.argv[2] === "block") {
  await blockStep(process.argv[3], Number(process.argv[4]));
} else {
  const work = mkdtempSync(join(tmpdir(), "offtune-example-"));
  await initBackend(undefined, true);
  const model = await openModel(MODEL, { split: SPLIT });
  const { arch, cfg, outer } = model;
  const ids = tf.tensor2d(tokenIds(), [B, T], "int32");
  saveHidden(work, arch.embed(outer, ids, cfg)); // [B, T, d]
  for (let i = 0; i < cfg.layers; i++) {
    runBlock(work, i);
    console.log(`block ${i} done in its own process`);
  }
  const streamed = lmLoss(arch.head(outer, loadHidden(work, cfg.hidden), cfg), ids).dataSync()[0]; // logits [B, T, V]

  // The same loss with every block resident, in this process.
  const blocks: WeightMap[] = [];
  for (let i = 0; i < cfg.layers; i++) blocks.push(await model.loadBlock(i));
  const resident = lmLoss(forwardLogits(arch, cfg, outer, blocks, ids), ids).dataSync()[0];
  await model.close();
  rmSync(work, { recursive: true, force: true });
  console.log(`LM loss, one block per process: ${streamed.toFixed(6)}; all blocks resident: ${resident.toFixed(6)}`);
  if (Math.abs(streamed - resident) > 1e-5 * Math.abs(resident)) throw new Error("The streamed loss differs");
}
