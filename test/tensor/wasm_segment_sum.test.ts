import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { expectParity, maxAbsDiff, onBackend, randomData, startWasm } from "./parity.ts";

beforeAll(startWasm);

/** Reference: out[ids[i]] += x[i], rows with ids outside [0, n) dropped. */
function bruteSegmentSum(x: Float32Array, rowSize: number, ids: number[], numSegments: number): Float32Array {
  const out = new Float32Array(numSegments * rowSize);
  ids.forEach((s, i) => {
    if (s < 0 || s >= numSegments) return;
    for (let j = 0; j < rowSize; j++) out[s * rowSize + j] += x[i * rowSize + j];
  });
  return out;
}

describe("wasm UnsortedSegmentSum kernel", () => {
  const ids = [3, 0, 3, 1, 5, 3, -1, 0];
  const x = randomData(8 * 2 * 3, 40); // [8, 2, 3]

  it("matches brute force (rows [2, 3], repeated, missing and out-of-range ids)", async () => {
    const [actual] = await onBackend(
      "wasm",
      () => tf.unsortedSegmentSum(tf.tensor(x, [8, 2, 3]), tf.tensor1d(ids, "int32"), 5),
    );
    const expected = { shape: [5, 2, 3], values: bruteSegmentSum(x, 6, ids, 5) };
    const diff = maxAbsDiff(actual, expected);
    console.log(`unsortedSegmentSum: max abs diff wasm vs brute force ${diff.toExponential(2)} (bound 1e-6)`);
    expect(diff).toBeLessThanOrEqual(1e-6);
  });

  it("matches cpu for float32 and int32 data", async () => {
    await expectParity(
      "unsortedSegmentSum float32",
      () => tf.unsortedSegmentSum(tf.tensor(x, [8, 2, 3]), tf.tensor1d(ids, "int32"), 5),
      1e-6,
    );
    await expectParity(
      "unsortedSegmentSum int32",
      () => tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8], "int32"), tf.tensor1d(ids, "int32"), 4),
      0,
    );
  });

  it("takes 2-D segment ids that prefix the data shape", async () => {
    const [actual] = await onBackend("wasm", () =>
      // The op's types say 1-D; the kernel takes any prefix shape, as TensorFlow's does.
      tf.engine().runKernel(
        "UnsortedSegmentSum",
        { x: tf.tensor(x, [2, 4, 6]), segmentIds: tf.tensor2d(ids, [2, 4], "int32") },
        { numSegments: 4 },
      ) as tf.Tensor);
    expect(maxAbsDiff(actual, { shape: [4, 6], values: bruteSegmentSum(x, 6, ids, 4) })).toBeLessThanOrEqual(1e-6);
  });

  it("gives gather its gradient, equal to cpu's", async () => {
    const table = randomData(6 * 4, 41);
    const weights = randomData(5 * 4, 42);
    const build = () =>
      tf.grad((t: tf.Tensor) =>
        tf.sum(tf.mul(tf.gather(t, tf.tensor1d([4, 0, 4, 2, 4], "int32")), tf.tensor(weights, [5, 4])))
      )(
        tf.tensor(table, [6, 4]),
      );
    await expectParity("gather gradient", build, 1e-6);
  });

  it("rejects segment ids that do not prefix the data shape", () => {
    expect(() => tf.tidy(() => tf.unsortedSegmentSum(tf.ones([4, 3]), tf.tensor1d([0, 1, 2], "int32"), 3))).toThrow(
      /segmentIds shape \[3\] to be a prefix of x shape \[4,3\]/,
    );
  });
});
