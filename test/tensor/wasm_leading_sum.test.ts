import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
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
  it.each(cases)("gives the stock kernel's bits on $shape summed over $axis", ({ shape, axis, keepDims }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = tf.tensor(spread(size, shape.length * 31 + size), shape);
    const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + shape.length : a));
    const rest = shape.map((_, i) => i).filter((i) => !axes.includes(i));
    // The stock kernel's own route: the reduced axes moved last, then an innermost sum.
    const stock = tf.sum(tf.transpose(x, [...rest, ...axes]), axes.map((_, j) => rest.length + j));
    const got = tf.sum(x, axis, keepDims);
    const want = keepDims ? stock.reshape(shape.map((d, i) => (axes.includes(i) ? 1 : d))) : stock;
    expect(got.shape).toEqual(want.shape);
    const a = got.dataSync() as Float32Array;
    const b = want.dataSync() as Float32Array;
    expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
    // And not a trivial agreement: summed in another order, the bits differ somewhere.
    const reversed = tf.sum(tf.reverse(x, axes), axis, keepDims).dataSync() as Float32Array;
    expect(reversed.some((v, i) => v !== a[i])).toBe(true);
    tf.dispose([x, stock, got, want]);
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
