import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { originalWasmKernel } from "../../src/tensor/wasm_kernels.ts";
import { expectParity, randomTensor, startWasm } from "./parity.ts";

beforeAll(startWasm);

/** [logical a, logical b] shapes of `a·b` before any transpose. */
const shapes: Array<[string, number[], number[]]> = [
  ["2-D", [5, 7], [7, 6]],
  ["batched", [3, 5, 7], [3, 7, 6]],
  ["b broadcast", [3, 5, 7], [7, 6]],
  ["a broadcast", [5, 7], [2, 7, 6]],
  ["suffix broadcast", [2, 3, 5, 7], [3, 7, 6]],
  ["two-sided broadcast", [2, 1, 5, 7], [1, 3, 7, 6]],
];
const flags: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];

function swapLastTwo(shape: number[]): number[] {
  return [...shape.slice(0, -2), shape[shape.length - 1], shape[shape.length - 2]];
}

function broadcastBatchTo(x: tf.Tensor, batch: number[]): tf.Tensor {
  return tf.broadcastTo(x, [...batch, ...x.shape.slice(-2)]);
}

describe("wasm BatchMatMul fix", () => {
  it("replaces the registered kernel and keeps the original", () => {
    const original = originalWasmKernel("BatchMatMul");
    expect(original).toBeTypeOf("function");
    expect(tf.getKernel("BatchMatMul", "wasm")?.kernelFunc).not.toBe(original);
  });

  for (const [label, aShape, bShape] of shapes) {
    for (const [tA, tB] of flags) {
      it(`matches cpu on ${label} shapes, transposeA=${tA} transposeB=${tB}`, async () => {
        const physicalA = tA ? swapLastTwo(aShape) : aShape;
        const physicalB = tB ? swapLastTwo(bShape) : bShape;
        const outBatch = tf.backend_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
        // Reference: batches broadcast explicitly, so cpu's modulo indexing is never relied on.
        await expectParity(
          `matMul ${label} tA=${tA} tB=${tB}`,
          () => tf.matMul(randomTensor(physicalA, 1), randomTensor(physicalB, 2), tA, tB),
          1e-5,
          () =>
            tf.matMul(
              broadcastBatchTo(randomTensor(physicalA, 1), outBatch),
              broadcastBatchTo(randomTensor(physicalB, 2), outBatch),
              tA,
              tB,
            ),
        );
      });
    }
  }

  it("rejects mismatched inner dimensions with both shapes in the message", () => {
    expect(() => tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([2, 3]), true, true))).toThrow(
      /Cannot matMul shapes \[2,3\] and \[2,3\] \(transposeA=true, transposeB=true\): inner dimensions 2 and 3 differ/,
    );
  });
});

describe("wasm _FusedMatMul fix", () => {
  const activations = ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu", "prelu"] as const;
  const biases: Array<[string, (rows: number) => number[] | undefined]> = [
    ["no bias", () => undefined],
    ["scalar bias", () => []],
    ["bias [1]", () => [1]],
    ["bias [6]", () => [6]],
    ["bias [1,6]", () => [1, 6]],
    ["bias [rows,6]", (rows) => [rows, 6]],
  ];
  // The stock kernel breaks past the first batch at sizes like 66x40x70, so those are here too.
  const cases = [[[5, 7], [7, 6]], [[2, 5, 7], [2, 7, 6]], [[2, 5, 7], [7, 6]], [[3, 66, 40], [40, 6]], [[2, 66, 40], [
    2,
    40,
    6,
  ]]];
  for (const [aShape, bShape] of cases) {
    for (const [tA, tB] of flags) {
      it(`matches cpu for a [${aShape}] b [${bShape}], transposeA=${tA} transposeB=${tB}, every bias and activation`, async () => {
        for (const [biasLabel, biasShapeFor] of biases) {
          const biasShape = biasShapeFor(aShape[aShape.length - 2]);
          for (const activation of activations) {
            const run = () =>
              tf.fused.matMul({
                a: randomTensor(tA ? swapLastTwo(aShape) : aShape, 3),
                b: randomTensor(tB ? swapLastTwo(bShape) : bShape, 4),
                transposeA: tA,
                transposeB: tB,
                bias: biasShape ? randomTensor(biasShape, 5) : undefined,
                activation,
                preluActivationWeights: activation === "prelu" ? randomTensor([6], 6) : undefined,
                leakyreluAlpha: 0.3,
              });
            await expectParity(`fused ${biasLabel} ${activation} tA=${tA} tB=${tB}`, run, 1e-5);
          }
        }
      });
    }
  }
});
