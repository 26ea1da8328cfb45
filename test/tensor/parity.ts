/**
 * Test helpers: run the same computation on the wasm backend (with the
 * kernel fixes) and on the cpu backend (the reference) and compare.
 */
import { expect } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";

/** Starts wasm with the fixes installed (idempotent, quiet). */
export async function startWasm(): Promise<void> {
  await initBackend("wasm", true);
}

/** Deterministic data in [-1, 1) (mulberry32), identical on every backend. */
export function randomData(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** A tensor of deterministic data of `shape`. */
export function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomData(tf.util.sizeFromShape(shape), seed), shape);
}

/** Data and shape of one result, read back from the backend. */
export interface Result {
  shape: number[];
  values: Float32Array;
}

/** Runs `build` on `backend` in a tidy scope and reads every output back. */
export async function onBackend(
  backend: "wasm" | "cpu",
  build: () => tf.Tensor | tf.Tensor[],
): Promise<Result[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const out = build();
    return (Array.isArray(out) ? out : [out]).map((t) => ({
      shape: t.shape,
      values: Float32Array.from(t.dataSync() as ArrayLike<number>),
    }));
  });
}

/** Largest |a - b| over two equally shaped results (NaN if any differs in NaN-ness). */
export function maxAbsDiff(a: Result, b: Result): number {
  expect(a.shape).toEqual(b.shape);
  let worst = 0;
  for (let i = 0; i < a.values.length; i++) {
    const d = Math.abs(a.values[i] - b.values[i]);
    if (Number.isNaN(d)) {
      if (Number.isNaN(a.values[i]) !== Number.isNaN(b.values[i])) return NaN;
      continue;
    }
    worst = Math.max(worst, d);
  }
  return worst;
}

/**
 * Runs `build` on wasm and `reference` (default: `build`) on cpu, prints the
 * max abs diff of every output and asserts it is at most `tol`. Leaves the
 * wasm backend selected.
 */
export async function expectParity(
  name: string,
  build: () => tf.Tensor | tf.Tensor[],
  tol: number,
  reference: () => tf.Tensor | tf.Tensor[] = build,
): Promise<number> {
  const expected = await onBackend("cpu", reference);
  const actual = await onBackend("wasm", build);
  expect(actual.length).toBe(expected.length);
  const diffs = actual.map((r, i) => maxAbsDiff(r, expected[i]));
  const worst = Math.max(...diffs);
  console.log(`${name}: max abs diff wasm vs cpu ${worst.toExponential(2)} (bound ${tol})`);
  for (const d of diffs) expect(d).toBeLessThanOrEqual(tol);
  return worst;
}
