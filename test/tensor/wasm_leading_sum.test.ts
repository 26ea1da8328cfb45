import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { sumRowsInto } from "../../src/tensor/wasm_leading_sum.ts";
import { lapackAvailable } from "../../src/linalg/gemm.ts";
import { randomData, startWasm } from "./parity.ts";

beforeAll(startWasm);

/** Values of very different magnitudes, so a different order of additions shows in the bits. */
function spread(size: number, seed: number): Float32Array {
  const base = randomData(size, seed);
  return base.map((v, i) => v * 10 ** ((i * 7919) % 9 - 4));
}

describe("wasm Sum over leading axes", () => {
  const cases: Array<{ shape: number[]; axis: number | number[]; keepDims?: boolean }> = [
    { shape: [4096, 96], axis: 0 }, // a bias gradient
    { shape: [6, 33, 17], axis: [0, 1] }, // a LayerNorm parameter gradient of [B, T, d]
    { shape: [6, 33, 17], axis: [1, 0], keepDims: true },
    { shape: [6, 33, 17], axis: -3 },
  ];
  /** The stock kernel's own route: the reduced axes moved last, then an innermost sum. */
  function stockSum(x: tf.Tensor, axes: number[], keepDims?: boolean): tf.Tensor {
    const shape = x.shape;
    const rest = shape.map((_, i) => i).filter((i) => !axes.includes(i));
    const stock = tf.sum(tf.transpose(x, [...rest, ...axes]), axes.map((_, j) => rest.length + j));
    return keepDims ? stock.reshape(shape.map((d, i) => (axes.includes(i) ? 1 : d))) : stock;
  }

  it.each(cases)("sums $shape over $axis as float64 does, to float32 rounding", ({ shape, axis, keepDims }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = spread(size, shape.length * 31 + size);
    const x = tf.tensor(values, shape);
    const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + shape.length : a));
    const got = tf.sum(x, axis, keepDims);
    const want = stockSum(x, axes, keepDims);
    expect(got.shape).toEqual(want.shape);
    // Exact column sums in float64, the reduced axes leading: [rows, cols].
    const cols = shape.filter((_, i) => !axes.includes(i)).reduce((a, b) => a * b, 1);
    const rows = size / cols;
    const exact = new Float64Array(cols);
    const absSum = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        exact[c] += values[r * cols + c];
        absSum[c] += Math.abs(values[r * cols + c]);
      }
    }
    const a = got.dataSync() as Float32Array;
    for (let c = 0; c < cols; c++) expect(Math.abs(a[c] - exact[c])).toBeLessThanOrEqual(rows * 2 ** -23 * absSum[c]);
    // Not the stock route's transpose with a different order only: a wrong column or row shows far above rounding.
    const shifted = tf.sum(tf.reverse(x, axes.length === shape.length ? [] : [shape.length - 1]), axis, keepDims).dataSync();
    expect(Array.from(shifted).some((v, c) => Math.abs(v - exact[c]) > rows * 2 ** -23 * absSum[c])).toBe(true);
    tf.dispose([x, got, want]);
  });

  // [1, 0] is not a leading-axes sum in order: the stock kernel keeps it (the first cases check its values).
  it.each(cases.filter((c) => !(Array.isArray(c.axis) && c.axis[0] === 1)))("without OpenBLAS, sums rows in the stock kernel's order: its bits on $shape over $axis", ({ shape, axis, keepDims }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = spread(size, shape.length * 31 + size);
    const x = tf.tensor(values, shape);
    const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + shape.length : a));
    const b = stockSum(x, axes, keepDims).dataSync() as Float32Array;
    const rows = axes.reduce((p, i) => p * shape[i], 1);
    const a = new Float32Array(size / rows);
    sumRowsInto(values, rows, size / rows, a);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
    // And not a trivial agreement: summed in another order, the bits differ somewhere.
    const reversed = new Float32Array(size / rows);
    const flipped = tf.reverse(x, axes).dataSync() as Float32Array;
    sumRowsInto(flipped, rows, size / rows, reversed);
    expect(reversed.some((v, i) => v !== a[i])).toBe(true);
    x.dispose();
  });

  it("leaves inner and whole reductions and int32 sums to the stock kernel, with their values", () => {
    const x = tf.tensor(randomData(2 * 3 * 4, 5), [2, 3, 4]);
    const values = x.arraySync() as number[][][];
    const inner = tf.sum(x, 1).arraySync() as number[][];
    expect(inner[1][2]).toBeCloseTo(values[1][0][2] + values[1][1][2] + values[1][2][2], 5);
    expect(tf.sum(x).dataSync()[0]).toBeCloseTo(values.flat(2).reduce((s, v) => s + v, 0), 4);
    expect(Array.from(tf.sum(tf.tensor2d([[1, 2], [3, 4]], [2, 2], "int32"), 0).dataSync())).toEqual([4, 6]);
    x.dispose();
  });
});
