import { beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "@tensorflow/tfjs";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { gatherRows, streamedLmLossGrad, vocabularyShardTensors, type VocabularyRows } from "../../src/model/vocabulary.ts";
import { Prng } from "../../src/train/prng.ts";
import { matmulInto } from "../../src/linalg/gemm.ts";

/**
 * Whether the BLAS gives rows `[0, cut)` and `[cut, r)` of `h · eᵀ` (`h` is
 * `[r, d]`, `e` is `[·, d]`) the same bits as one product of all `r` rows.
 */
function rowsStandAlone(h: Float32Array, r: number, d: number, cut: number, e: Float32Array): boolean {
  const c = e.length / d;
  const product = (from: number, to: number) => {
    const out = new Float32Array((to - from) * c); // [to − from, c]
    matmulInto({ rows: to - from, cols: c, data: out }, { rows: to - from, cols: d, data: h.subarray(from * d, to * d) }, { rows: c, cols: d, data: e }, false, true);
    return out;
  };
  const whole = product(0, r);
  const split = new Float32Array([...product(0, cut), ...product(cut, r)]);
  return Buffer.from(split.buffer).equals(Buffer.from(whole.buffer));
}

/** An in-memory `[rows, width]` matrix that counts its reads. */
function memoryRows(data: Float32Array, rows: number, width: number) {
  const reads: Array<[number, number]> = [];
  const matrix: VocabularyRows = {
    name: "embed.weight",
    rows,
    width,
    read(start, count) {
      reads.push([start, count]);
      return data.slice(start * width, (start + count) * width);
    },
  };
  return { matrix, reads };
}

function randomArray(n: number, rng: Prng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale);
}

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("gatherRows", () => {
  it("embeds remapped ids with the compact table exactly as the ids with the whole matrix", () => {
    const rng = new Prng(3);
    const v = 5000;
    const d = 4;
    const data = randomArray(v * d, rng);
    const ids = Int32Array.from([4999, 7, 7, 0, 2100, 2200, 4999, 12, 9, 2104]);
    const { matrix, reads } = memoryRows(data, v, d);
    const { table, remapped } = gatherRows(matrix, ids);
    expect(table.length).toBe(8 * d); // eight distinct ids
    for (let i = 0; i < ids.length; i++) {
      expect(table.subarray(remapped[i] * d, (remapped[i] + 1) * d)).toEqual(data.subarray(ids[i] * d, (ids[i] + 1) * d));
    }
    // Ids at most 4 rows apart share a read; the rows between ids further apart are never read.
    expect(reads).toEqual([[0, 1], [7, 6], [2100, 5], [2200, 1], [4999, 1]]);
  });

  it("names an id outside the vocabulary", () => {
    const { matrix } = memoryRows(new Float32Array(8), 4, 2);
    expect(() => gatherRows(matrix, Int32Array.from([1, 4]))).toThrow(/Token id 4 is outside the vocabulary of "embed.weight" \(size 4\)/);
  });
});

describe("streamedLmLossGrad", () => {
  /** The summed NLL and its gradient by the tensor backend's logSoftmax and autodiff (the reference). */
  function reference(h: Float32Array, e: Float32Array, targets: Int32Array, r: number, v: number, d: number) {
    return tf.tidy(() => {
      const table = tf.tensor2d(e, [v, d]);
      const picked = tf.oneHot(tf.tensor1d(targets, "int32"), v); // [R, V]
      const loss = (x: Tensor) => tf.neg(tf.sum(tf.mul(tf.logSoftmax(tf.matMul(x, table, false, true)), picked)));
      const { value, grads } = tf.valueAndGrads(loss)([tf.tensor2d(h, [r, d])]);
      return { lossSum: value.dataSync()[0], dh: grads[0].dataSync() as Float32Array };
    });
  }

  for (const chunk of [7, 64, 1000]) {
    it(`equals logSoftmax and autodiff with vocabulary chunks of ${chunk} rows`, () => {
      const rng = new Prng(chunk);
      const [r, v, d] = [12, 61, 8];
      // Large logits make the running maximum move between chunks, exercising the rescaling.
      const h = randomArray(r * d, rng, 3);
      const e = randomArray(v * d, rng, 3);
      const targets = Int32Array.from({ length: r }, (_, i) => (i * 17 + 5) % v);
      const { matrix, reads } = memoryRows(e, v, d);
      const got = streamedLmLossGrad({ rows: r, cols: d, data: h }, targets, matrix, chunk);
      const want = reference(h, e, targets, r, v, d);
      expect(reads.length).toBe(Math.ceil(v / chunk));
      expect(got.lossSum).toBeGreaterThan(1);
      expect(Math.abs(got.lossSum - want.lossSum) / want.lossSum).toBeLessThan(1e-5);
      let maxDiff = 0;
      for (let i = 0; i < want.dh.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got.dh.data[i] - want.dh[i]));
      expect(maxDiff).toBeLessThan(1e-4);
    });
  }

  it("gives each row the same loss and gradient however the rows are split into calls, to the bit where the BLAS allows", () => {
    // A build on a pool splits the head's rows by slot; the shards stay the same bytes only if a
    // row's result does not depend on which other rows share its call. That holds for this
    // function's own arithmetic, and for its two products where the BLAS computes a row the same
    // wherever it sits in a call: OpenBLAS's SkylakeX and Sandybridge kernels do, its Haswell and
    // Zen kernels do not (docs/DISTRIBUTED.md "How a GradOT build uses the cores").
    const rng = new Prng(11);
    const [r, v, d, cut] = [1200, 5000, 16, 450];
    const h = randomArray(r * d, rng, 2);
    const targets = Int32Array.from({ length: r }, (_, i) => (i * 131 + 7) % v);
    const { matrix } = memoryRows(randomArray(v * d, rng, 2), v, d);
    const whole = streamedLmLossGrad({ rows: r, cols: d, data: h }, targets, matrix);
    const first = streamedLmLossGrad({ rows: cut, cols: d, data: h.subarray(0, cut * d) }, targets.subarray(0, cut), matrix);
    const rest = streamedLmLossGrad({ rows: r - cut, cols: d, data: h.subarray(cut * d) }, targets.subarray(cut), matrix);
    const split = new Float32Array([...first.dh.data, ...rest.dh.data]);
    if (rowsStandAlone(h, r, d, cut, randomArray(1000 * d, rng, 2))) {
      expect(Buffer.from(split.buffer).equals(Buffer.from(whole.dh.data.buffer))).toBe(true);
    } else {
      let worst = 0; // the largest difference, against the largest gradient entry
      let scale = 0;
      for (let i = 0; i < split.length; i++) {
        worst = Math.max(worst, Math.abs(split[i] - whole.dh.data[i]));
        scale = Math.max(scale, Math.abs(whole.dh.data[i]));
      }
      console.log(`streamedLmLossGrad split against whole: this BLAS computes a row by its place in a call; largest difference ${(worst / scale).toExponential(1)} of the largest entry`);
      expect(worst / scale).toBeLessThan(1e-5);
    }
    expect(Math.abs(first.lossSum + rest.lossSum - whole.lossSum)).toBeLessThan(1e-6 * whole.lossSum);
  });

  it("rejects a target outside the vocabulary and a width mismatch", () => {
    const { matrix } = memoryRows(new Float32Array(8), 4, 2);
    const h = { rows: 1, cols: 2, data: new Float32Array(2) };
    expect(() => streamedLmLossGrad(h, Int32Array.from([4]), matrix)).toThrow(/Target token 4 is outside the vocabulary/);
    expect(() => streamedLmLossGrad({ rows: 1, cols: 3, data: new Float32Array(3) }, Int32Array.from([0]), matrix))
      .toThrow(/hidden width 3 differs/);
  });
});

describe("vocabularyShardTensors", () => {
  /** A column's streamed values in one array, and the number of runs. */
  const collect = (t: { stream(emit: (v: Float32Array) => void): void }) => {
    const runs: Float32Array[] = [];
    t.stream((v) => runs.push(v.slice()));
    const all = new Float32Array(runs.reduce((n, r) => n + r.length, 0));
    let at = 0;
    for (const r of runs) all.set(r, (at += r.length) - r.length);
    return { all, runs: runs.length };
  };

  it("streams a tied matrix once as stored, and an untied head transposed band by band", () => {
    const rng = new Prng(9);
    const v = 2500; // two row sweeps of 2048
    const d = 7;
    const embed = memoryRows(randomArray(v * d, rng), v, d).matrix;
    const headData = randomArray(v * d, rng);
    const head = { ...memoryRows(headData, v, d).matrix, name: "lm_head.weight" };

    const tied = vocabularyShardTensors({ embedding: embed, head: embed });
    expect(tied.map((t) => [t.name, t.shape])).toEqual([["embed.weight", [v, d]]]);
    const stored = collect(tied[0]);
    expect(stored.runs).toBe(2);
    expect(stored.all).toEqual(embed.read(0, v));

    const untied = vocabularyShardTensors({ embedding: embed, head }, 3 * v); // bands of 3 output rows
    expect(untied.map((t) => [t.name, t.shape])).toEqual([["embed.weight", [v, d]], ["lm_head.weight", [d, v]]]);
    const transposed = collect(untied[1]);
    expect(transposed.runs).toBe(3); // rows [0, 3), [3, 6), [6, 7)
    const expected = new Float32Array(d * v);
    for (let r = 0; r < v; r++) for (let c = 0; c < d; c++) expected[c * v + r] = headData[r * d + c];
    expect(transposed.all).toEqual(expected);
  });
});
