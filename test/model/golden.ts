/**
 * Golden-parity checks shared by the wasm and cpu test files: loads a fixture
 * written by fixtures/golden/make_golden.py (an independent PyTorch reference)
 * through openCheckpoint + load.ts and compares hidden states, logits, losses
 * and the streamed backward's weight gradients with the torch values.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { tf } from "../../src/tensor/backend.ts";
import { forwardLogits, lmLoss } from "../../src/model/forward.ts";
import { loadBlockWeights, loadOuterWeights, resolveModel } from "../../src/model/load.ts";
import { blockVjp, headLossGrad } from "../../src/model/vjp.ts";
import type { Tensor } from "@tensorflow/tfjs";

/** The fixture directory of one golden model. */
export function fixtureDir(name: string): string {
  return fileURLToPath(new URL(`../../fixtures/golden/${name}`, import.meta.url));
}

interface GoldenArray {
  shape: number[];
  f32: string;
}

interface Golden {
  format: string;
  version: number;
  model_type: string;
  dtype: string;
  input_ids: number[][];
  loss_mask: number[][];
  logits: GoldenArray;
  hidden_states: GoldenArray[];
  loss: number;
  loss_masked: number;
  grads: Record<string, GoldenArray>;
}

function decode(a: GoldenArray): { shape: number[]; data: Float32Array } {
  const bytes = Uint8Array.from(atob(a.f32), (c) => c.charCodeAt(0));
  return { shape: a.shape, data: new Float32Array(bytes.buffer) };
}

/** golden.json of a fixture, checked for format and version. */
export function readGolden(name: string): Golden {
  const golden = JSON.parse(readFileSync(`${fixtureDir(name)}/golden.json`, "utf8")) as Golden;
  expect(golden.format).toBe("offtune-golden");
  expect(golden.version).toBe(1);
  return golden;
}

/**
 * Asserts `|actual - expected| <= atol + rtol · max|expected|` elementwise
 * and logs the max abs diff; returns it.
 */
function expectClose(
  label: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol: number,
): number {
  expect(actual.length).toBe(expected.length);
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  const allowed = atol + rtol * scale;
  console.log(`${label}: max abs diff ${maxDiff.toExponential(2)} (allowed ${allowed.toExponential(2)})`);
  expect(Number.isFinite(maxDiff)).toBe(true);
  expect(maxDiff).toBeLessThanOrEqual(allowed);
  return maxDiff;
}

/** Tolerances: float32 on both sides; only summation order differs. */
const HIDDEN = { atol: 1e-6, rtol: 1e-5 };
const LOGITS = { atol: 1e-6, rtol: 1e-5 };
const LOSS = 5e-6;
const GRAD = { atol: 1e-8, rtol: 2e-5 };

/**
 * Runs the full parity check of fixture `name` on the current backend, and
 * asserts no tensor outlives it.
 */
export async function checkGolden(name: string): Promise<void> {
  const golden = readGolden(name);
  const reader = await openCheckpoint(fixtureDir(name));
  const before = tf.memory().numTensors;
  try {
    const { arch, cfg } = resolveModel(reader);
    expect(cfg.modelType).toBe(golden.model_type);
    const outer = await loadOuterWeights(reader, arch, cfg);
    const blocks = [];
    for (let i = 0; i < cfg.layers; i++) blocks.push(await loadBlockWeights(reader, arch, cfg, i));
    const ids = tf.tensor2d(golden.input_ids, undefined, "int32");
    const mask = tf.tensor2d(golden.loss_mask, undefined, "int32");

    // Forward, block by block: the block-boundary activations.
    const hidden: Tensor[] = [arch.embed(outer, ids, cfg)];
    for (const w of blocks) hidden.push(arch.block(w, hidden[hidden.length - 1], cfg));
    hidden.forEach((h, i) => {
      const want = decode(golden.hidden_states[i]);
      expect(h.shape).toEqual(want.shape);
      expectClose(`${name} hidden ${i}`, h.dataSync(), want.data, HIDDEN.atol, HIDDEN.rtol);
    });

    const logits = forwardLogits(arch, cfg, outer, blocks, ids);
    const wantLogits = decode(golden.logits);
    expect(logits.shape).toEqual(wantLogits.shape);
    expectClose(`${name} logits`, logits.dataSync(), wantLogits.data, LOGITS.atol, LOGITS.rtol);
    const loss = lmLoss(logits, ids);
    const lossMasked = lmLoss(logits, ids, mask);
    expectClose(`${name} loss`, loss.dataSync(), [golden.loss], LOSS, 0);
    expectClose(`${name} masked loss`, lossMasked.dataSync(), [golden.loss_masked], LOSS, 0);
    tf.dispose([logits, loss, lossMasked]);

    // Streamed backward: head VJP, then one block VJP at a time, top down.
    const head = headLossGrad(arch, cfg, outer, hidden[cfg.layers], ids);
    expectClose(`${name} head loss`, [head.loss], [golden.loss], LOSS, 0);
    const wanted = new Map(Object.entries(golden.grads));
    let dy = head.dHidden;
    for (let i = cfg.layers - 1; i >= 0; i--) {
      const prefix = arch.blockPrefix(i);
      const { dx, dWeights } = blockVjp(arch, cfg, blocks[i], hidden[i], dy);
      for (const [hfName, want] of wanted) {
        const localName = localNameOf(hfName, prefix, arch.basePrefix);
        if (localName === undefined) continue;
        const got = dWeights.get(localName);
        expect(got, `gradient of ${hfName}`).toBeDefined();
        const g = decode(want);
        const kernel = arch.storedTransposed(localName) ? tf.transpose(got!) : got!.clone();
        expect(kernel.shape).toEqual(g.shape);
        expectClose(`${name} d loss / d ${hfName}`, kernel.dataSync(), g.data, GRAD.atol, GRAD.rtol);
        kernel.dispose();
        wanted.delete(hfName);
      }
      tf.dispose([dy, ...dWeights.values()]);
      dy = dx;
    }
    expect([...wanted.keys()], "golden gradients not reached by the streamed backward").toEqual([]);
    tf.dispose([dy, ids, mask, ...hidden, ...outer.values(), ...blocks.flatMap((b) => [...b.values()])]);
    expect(tf.memory().numTensors).toBe(before);
  } finally {
    await reader.close();
  }
}

/** The block-local name of checkpoint name `hfName` if it lies in the block with `prefix`. */
function localNameOf(hfName: string, prefix: string, basePrefix?: string): string | undefined {
  if (hfName.startsWith(prefix)) return hfName.slice(prefix.length);
  const bare = basePrefix && prefix.startsWith(basePrefix) ? prefix.slice(basePrefix.length) : undefined;
  if (bare !== undefined && hfName.startsWith(bare)) return hfName.slice(bare.length);
  return undefined;
}
