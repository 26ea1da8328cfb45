import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { originalWasmKernel } from "../../src/tensor/wasm_kernels.ts";
import { gatherRowsInto } from "../../src/tensor/wasm_gather.ts";
import { expectParity, randomData, randomTensor, startWasm } from "./parity.ts";

beforeAll(startWasm);

describe("wasm GatherV2 fix", () => {
  it("replaces the registered kernel and keeps the original", () => {
    const original = originalWasmKernel("GatherV2");
    expect(original).toBeTypeOf("function");
    expect(tf.getKernel("GatherV2", "wasm")?.kernelFunc).not.toBe(original);
  });

  it("gives the table's rows bit for bit, for repeated ids and batched index shapes", () => {
    const [v, d] = [37, 5];
    const table = randomData(v * d, 3);
    const ids = Int32Array.from([36, 0, 7, 7, 12, 36, 1, 30], (id) => id); // [2, 4] below
    const got = tf.tidy(() => tf.gather(tf.tensor2d(table, [v, d]), tf.tensor2d(ids, [2, 4], "int32")));
    expect(got.shape).toEqual([2, 4, d]);
    const values = got.dataSync();
    got.dispose();
    ids.forEach((id, i) => expect(values.subarray(i * d, (i + 1) * d)).toEqual(table.subarray(id * d, (id + 1) * d)));
  });

  it("matches cpu exactly on a rank-3 table, a negative axis and an axis the stock kernel keeps", async () => {
    const ids = () => tf.tensor1d([3, 0, 3, 2], "int32");
    await expectParity("gather rank-3 rows", () => tf.gather(randomTensor([4, 3, 2], 1), ids()), 0);
    await expectParity("gather axis -2", () => tf.gather(randomTensor([4, 6], 2), ids(), -2), 0);
    await expectParity("gather axis 1 (stock kernel)", () => tf.gather(randomTensor([5, 4, 3], 3), ids(), 1), 0);
  });

  it("gathers no rows as the stock kernel does", async () => {
    await expectParity("gather no rows", () => tf.gather(randomTensor([4, 3], 5), tf.tensor1d([], "int32")), 0);
  });

  it("names an index outside the table instead of reading past it", () => {
    expect(() => tf.tidy(() => tf.gather(tf.ones([4, 2]), tf.tensor1d([1, 4], "int32")))).toThrow(/GatherV2: index 4 \(position 1\) is not in \[0, 3\]/);
    const out = new Float32Array(2);
    expect(() => gatherRowsInto(new Float32Array(8), 4, 2, Int32Array.from([-1]), out)).toThrow(RangeError);
  });

  it("leaves the gradient of a gather (UnsortedSegmentSum) as it was", async () => {
    await expectParity(
      "gather gradient",
      () => tf.grad((x: tf.Tensor) => tf.gather(x, tf.tensor1d([2, 0, 2], "int32")).sum())(randomTensor([3, 4], 4)),
      0,
    );
  });
});
