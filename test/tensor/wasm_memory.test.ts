/**
 * The kernel fixes free what they allocate: engine tensors (tf.memory) and
 * the wasm backend's own buffers (numDataIds, which also counts the
 * kernel-internal temporaries tf.memory cannot see), on success and on error.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { randomTensor, startWasm } from "./parity.ts";

beforeAll(async () => {
  await startWasm();
  await tf.setBackend("wasm");
});

function counts(): [number, number] {
  return [tf.memory().numTensors, tf.backend().numDataIds()];
}

/** Runs `work` once to warm up, then again, and asserts nothing was left behind. */
function expectNoLeak(label: string, work: () => void): void {
  work();
  const before = counts();
  work();
  const after = counts();
  console.log(`${label}: tensors ${before[0]} -> ${after[0]}, wasm buffers ${before[1]} -> ${after[1]}`);
  expect(after).toEqual(before);
}

const flags: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];

describe("no leaks from the wasm kernel fixes", () => {
  it("BatchMatMul, every transpose and broadcast path", () => {
    expectNoLeak("matMul", () =>
      tf.tidy(() => {
        for (const [tA, tB] of flags) {
          tf.matMul(randomTensor([4, 4], 1), randomTensor([4, 4], 2), tA, tB);
          tf.matMul(randomTensor([2, 1, 3, 3], 1), randomTensor([1, 2, 3, 3], 2), tA, tB);
        }
      }));
  });

  it("_FusedMatMul: one batch, folded batches, bias copy and tiling, unfused fallback", () => {
    expectNoLeak("fused matMul", () =>
      tf.tidy(() => {
        for (const [tA, tB] of flags) {
          const a = randomTensor([2, 4, 4], 3);
          tf.fused.matMul({
            a: a.slice([0, 0, 0], [1, 4, 4]),
            b: randomTensor([4, 4], 4),
            transposeA: tA,
            transposeB: tB,
            bias: randomTensor([4], 5),
            activation: "relu",
          });
          tf.fused.matMul({
            a,
            b: randomTensor([4, 4], 4),
            transposeA: tA,
            transposeB: tB,
            bias: randomTensor([1, 4], 5),
            activation: "elu",
          });
          tf.fused.matMul({
            a,
            b: randomTensor([4, 4], 4),
            transposeA: tA,
            transposeB: tB,
            bias: randomTensor([1], 5),
          });
          tf.fused.matMul({
            a,
            b: randomTensor([2, 4, 4], 4),
            transposeA: tA,
            transposeB: tB,
            bias: randomTensor([4, 4], 5),
            activation: "sigmoid",
          });
          tf.fused.matMul({ a, b: randomTensor([2, 4, 4], 4), transposeA: tA, transposeB: tB });
        }
      }));
  });

  it("_FusedMatMul that throws inside the original kernel", () => {
    expectNoLeak("fused matMul error", () =>
      tf.tidy(() => {
        const run = () =>
          tf.fused.matMul({
            a: randomTensor([4, 4], 1),
            b: randomTensor([4, 4], 2),
            transposeB: true,
            bias: randomTensor([1, 4], 3),
            activation: "swish" as "relu",
          });
        expect(run).toThrow(/swish/);
      }));
  });

  it("UnsortedSegmentSum and Einsum", () => {
    expectNoLeak("segment sum and einsum", () =>
      tf.tidy(() => {
        tf.unsortedSegmentSum(randomTensor([5, 3], 1), tf.tensor1d([0, 2, 2, 1, 7], "int32"), 3);
        tf.einsum("bhqd,bhkd->bhqk", randomTensor([1, 2, 3, 4], 2), randomTensor([1, 2, 3, 4], 3));
        tf.einsum("ijk,kl->li", randomTensor([2, 3, 4], 4), randomTensor([4, 5], 5));
        tf.einsum("ij->ij", randomTensor([2, 3], 6));
        tf.einsum("ij->", randomTensor([2, 3], 7));
      }));
  });

  it("gradients through the fixed kernels and the gradient fixes", () => {
    expectNoLeak("gradients", () =>
      tf.tidy(() => {
        const x = randomTensor([2, 3, 4], 1);
        const w = randomTensor([4, 4], 2);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.matMul(a, b, false, true)))([x, w]);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.einsum("btd,hd->bth", a, b)))([x, w]);
        tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([1, 1, 0], "int32"))))(w);
        tf.grad((t: tf.Tensor) => tf.sum(tf.cumsum(t, 1)))(x);
        tf.grad((t: tf.Tensor) => tf.sum(tf.stridedSlice(t, [0, 3], [4, 0], [1, -2])))(w);
        tf.grad((t: tf.Tensor) => tf.sum(tf.gatherND(t, tf.tensor2d([[1], [1]], undefined, "int32"))))(w);
      }));
  });
});

describe("buffers shared by reference on wasm", () => {
  it("a weight buffer multiplied under two shapes gives both right products (no stale XNNPACK operator)", () => {
    tf.tidy(() => {
      const b = tf.tensor1d([10, 100]);
      const ones = tf.ones([2, 1]);
      // [2, 1]·[1, 2] (outer product), then [1, 2]·[2, 1] (dot product) with the same buffer as `b`.
      expect([...tf.matMul(ones, tf.reshape(b, [1, 2])).dataSync()]).toEqual([10, 100, 10, 100]);
      expect([...tf.matMul(tf.ones([1, 2]), tf.reshape(b, [2, 1])).dataSync()]).toEqual([110]);
      expect([...tf.fused.matMul({ a: ones, b: tf.reshape(b, [1, 2]) }).dataSync()]).toEqual([10, 100, 10, 100]);
    });
  });

  it("the gradient tape saves a multiplied weight without copying it", () => {
    const w = randomTensor([512, 512], 7); // 1 MiB
    const x = randomTensor([4, 512], 8);
    const buffers = tf.backend().numDataIds();
    let during = 0;
    const [dx] = tf.grads((input: tf.Tensor) => {
      const y = tf.sum(tf.matMul(input, w));
      during = (tf.backend() as unknown as { refCount(id: unknown): number }).refCount(w.dataId);
      return y;
    })([x]);
    expect(during).toBe(2); // `w` and the tape's saved reference, one buffer
    expect(dx.shape).toEqual([4, 512]);
    tf.dispose([dx, w, x]);
    expect(tf.backend().numDataIds()).toBe(buffers - 2);
  });

  it("a customGrad function's saved tensors share their input's buffer, values intact", () => {
    const x = randomTensor([256, 256], 9);
    const refCount = (t: tf.Tensor) => (tf.backend() as unknown as { refCount(id: unknown): number }).refCount(t.dataId);
    const buffers = tf.backend().numDataIds();
    let during = 0;
    let buffersDuring = 0;
    const square = tf.customGrad((input: tf.Tensor, save: tf.GradSaveFunc) => {
      const before = tf.backend().numDataIds();
      save([input]);
      during = refCount(input);
      buffersDuring = tf.backend().numDataIds() - before;
      return { value: tf.square(input), gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.mul(dy, tf.mul(saved, 2)) };
    });
    const values = x.dataSync().slice();
    const dx = tf.grad((t: tf.Tensor) => tf.sum(square(t) as tf.Tensor))(x);
    expect(during).toBe(2); // x and the tape's saved reference
    expect(buffersDuring).toBe(0); // no copy
    expect(Array.from(dx.dataSync())).toEqual(Array.from(values, (v) => Math.fround(v * 2)));
    expect(refCount(x)).toBe(1); // the saved reference was released after the backward
    tf.dispose([x, dx]);
    expect(tf.backend().numDataIds()).toBe(buffers - 1);
  });
});
