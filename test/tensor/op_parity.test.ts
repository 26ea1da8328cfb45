/**
 * Every op a transformer LM forward+backward uses, forward and gradient, on
 * wasm (with the fixes) against cpu; then a whole tiny transformer step.
 */
import { beforeAll, describe, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { expectParity, randomData, startWasm } from "./parity.ts";

beforeAll(startWasm);

type OpFn = (...xs: tf.Tensor[]) => tf.Tensor;

interface OpCase {
  name: string;
  shapes: number[][];
  f: OpFn;
  /** False for ops without a gradient (integer outputs); forward only. */
  grad?: boolean;
}

const ids = () => tf.tensor1d([4, 0, 4, 2, 5], "int32");
const labels = () => tf.tensor1d([1, 0, 4, 2, 3, 3], "int32");
const causal = () => tf.cast(tf.linalg.bandPart(tf.ones([5, 5]), -1, 0), "bool");
const geluTanh: OpFn = (x) =>
  tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));
const geluErf: OpFn = (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
const layerNorm: OpFn = (x) => {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5)));
};

const cases: OpCase[] = [
  { name: "gather", shapes: [[6, 4]], f: (t) => tf.gather(t, ids()) },
  { name: "softmax", shapes: [[2, 3, 5]], f: (t) => tf.softmax(t) },
  { name: "logSoftmax", shapes: [[2, 3, 5]], f: (t) => tf.logSoftmax(t) },
  { name: "layer norm (moments, rsqrt)", shapes: [[2, 3, 8]], f: layerNorm },
  { name: "mean and variance over axes", shapes: [[2, 3, 4]], f: (t) => tf.moments(t, [0, 2]).variance },
  { name: "gelu (erf)", shapes: [[3, 7]], f: geluErf },
  { name: "gelu (tanh)", shapes: [[3, 7]], f: geluTanh },
  { name: "relu", shapes: [[3, 7]], f: (t) => tf.relu(t) },
  { name: "silu", shapes: [[3, 7]], f: (t) => tf.mul(t, tf.sigmoid(t)) },
  { name: "erf", shapes: [[3, 7]], f: (t) => tf.erf(t) },
  { name: "tanh", shapes: [[3, 7]], f: (t) => tf.tanh(t) },
  {
    name: "exp, log, sqrt, pow",
    shapes: [[3, 7]],
    f: (t) => tf.add(tf.log(tf.add(tf.exp(t), 1)), tf.pow(tf.sqrt(tf.add(tf.abs(t), 1)), 3)),
  },
  { name: "cumsum last axis", shapes: [[2, 3, 4]], f: (t) => tf.cumsum(t, 2) },
  { name: "cumsum middle axis, exclusive reverse", shapes: [[2, 3, 4]], f: (t) => tf.cumsum(t, 1, true, true) },
  { name: "where with a causal mask", shapes: [[2, 5, 5]], f: (t) => tf.where(causal(), t, tf.fill([2, 5, 5], -1e9)) },
  { name: "where on a condition of x", shapes: [[3, 7]], f: (t) => tf.where(tf.greater(t, 0), t, tf.mul(t, 0.1)) },
  { name: "maximum with a scalar", shapes: [[3, 7]], f: (t) => tf.maximum(t, 0.1) },
  { name: "maximum of two tensors", shapes: [[3, 7], [3, 7]], f: (a, b) => tf.maximum(a, b) },
  {
    name: "concat and slice",
    shapes: [[2, 3, 4], [2, 2, 4]],
    f: (a, b) => tf.slice(tf.concat([a, b], 1), [0, 1, 1], [2, 3, 2]),
  },
  {
    name: "split, stack, unstack",
    shapes: [[2, 6]],
    f: (t) => tf.stack([...tf.split(t, 3, 1), tf.unstack(t)[0].slice(0, 4).reshape([2, 2])]),
  },
  { name: "tile", shapes: [[2, 3]], f: (t) => tf.tile(t, [2, 3]) },
  { name: "pad", shapes: [[2, 3]], f: (t) => tf.pad(t, [[1, 0], [2, 1]], 0.5) },
  { name: "stridedSlice", shapes: [[4, 6]], f: (t) => tf.stridedSlice(t, [0, 5], [4, 0], [2, -2]) },
  {
    name: "transpose, reshape, expandDims, squeeze",
    shapes: [[2, 3, 4]],
    f: (t) => tf.squeeze(tf.expandDims(tf.transpose(t, [2, 0, 1]), 1)).reshape([4, 6]),
  },
  { name: "broadcastTo", shapes: [[1, 3]], f: (t) => tf.broadcastTo(t, [4, 3]) },
  {
    name: "sum, max, logSumExp",
    shapes: [[3, 7]],
    f: (t) => tf.add(tf.add(tf.sum(t, 1), tf.max(t, 1)), tf.logSumExp(t, 1)),
  },
  { name: "clipByValue", shapes: [[3, 7]], f: (t) => tf.clipByValue(t, -0.3, 0.3) },
  { name: "oneHot", shapes: [], f: () => tf.oneHot(labels(), 5), grad: false },
  {
    name: "bandPart and range",
    shapes: [],
    f: () => tf.add(tf.linalg.bandPart(tf.ones([4, 4]), -1, 0), tf.range(0, 4)),
    grad: false,
  },
  {
    name: "sparse cross-entropy via oneHot",
    shapes: [[6, 5]],
    f: (logits) => tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(labels(), 5), tf.logSoftmax(logits)), -1))),
  },
  {
    name: "sparse cross-entropy via gatherND",
    shapes: [[6, 5]],
    f: (logits) => {
      const rows = tf.stack([tf.range(0, 6, 1, "int32"), labels()], 1);
      return tf.neg(tf.mean(tf.gatherND(tf.logSoftmax(logits), rows)));
    },
  },
  {
    name: "tf.losses.softmaxCrossEntropy",
    shapes: [[6, 5]],
    f: (logits) => tf.losses.softmaxCrossEntropy(tf.oneHot(labels(), 5), logits),
  },
  { name: "matMul", shapes: [[3, 4], [4, 5]], f: (a, b) => tf.matMul(a, b) },
  { name: "matMul transposeA", shapes: [[4, 3], [4, 5]], f: (a, b) => tf.matMul(a, b, true, false) },
  { name: "matMul transposeB", shapes: [[3, 4], [5, 4]], f: (a, b) => tf.matMul(a, b, false, true) },
  { name: "matMul both transposed, batched", shapes: [[2, 4, 3], [2, 5, 4]], f: (a, b) => tf.matMul(a, b, true, true) },
  { name: "matMul [B,T,d]x[d,n]", shapes: [[2, 3, 4], [4, 5]], f: (a, b) => tf.matMul(a, b) },
  {
    name: "fused matMul, bias, transposeB",
    shapes: [[3, 4], [5, 4], [5]],
    f: (a, b, c) => tf.fused.matMul({ a, b, bias: c, transposeB: true }),
  },
  {
    name: "einsum attention scores",
    shapes: [[2, 2, 5, 4], [2, 2, 5, 4]],
    f: (q, k) => tf.einsum("bhqd,bhkd->bhqk", q, k),
  },
  { name: "unsortedSegmentSum", shapes: [[5, 3]], f: (t) => tf.unsortedSegmentSum(t, ids(), 6) },
];

/** Forward output and, unless `grad: false`, the gradients of Σ w ⊙ f(x...). */
function forwardAndGrads({ shapes, f, grad }: OpCase, seed: number): () => tf.Tensor[] {
  return () => {
    const xs = shapes.map((shape, i) => tf.tensor(randomData(tf.util.sizeFromShape(shape), seed + i), shape));
    const y = f(...xs);
    if (grad === false) return [y];
    const w = tf.tensor(randomData(y.size, seed + 99), y.shape);
    return [y, ...tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(f(...args), w)))(xs)];
  };
}

describe("op forward+gradient parity, wasm vs cpu", () => {
  cases.forEach((op, i) => {
    it(op.name, async () => {
      await expectParity(op.name, forwardAndGrads(op, 100 + 10 * i), 1e-5);
    });
  });
});

/** One pre-norm transformer block with tied embeddings: loss and every gradient. */
function transformerStep(attention: "matMul" | "einsum"): () => tf.Tensor[] {
  const [B, T, d, h, vocab, hidden] = [2, 5, 8, 2, 11, 16];
  const dh = d / h;
  const shapes: Record<string, number[]> = {
    wte: [vocab, d],
    wpe: [T, d],
    g1: [d],
    wqkv: [d, 3 * d],
    bqkv: [3 * d],
    wo: [d, d],
    g2: [d],
    w1: [d, hidden],
    b1: [hidden],
    w2: [hidden, d],
    gf: [d],
  };
  const tokens = [1, 5, 2, 9, 3, 10, 0, 4, 4, 7];
  const targets = [5, 2, 9, 3, 6, 0, 4, 4, 7, 8];
  return () => {
    const names = Object.keys(shapes);
    const params = names.map((n, i) =>
      tf.tensor(randomData(tf.util.sizeFromShape(shapes[n]), 300 + i), shapes[n]).mul(0.5)
    );
    const loss = (...p: tf.Tensor[]) => {
      const P = Object.fromEntries(names.map((n, i) => [n, p[i]]));
      const norm = (x: tf.Tensor, g: tf.Tensor) => tf.mul(layerNorm(x), tf.add(g, 1));
      const ids = tf.tensor1d(tokens, "int32");
      let x = tf.add(tf.gather(P.wte, ids).reshape([B, T, d]), P.wpe); // [B, T, d]
      const qkv = tf.add(tf.matMul(norm(x, P.g1).reshape([B * T, d]), P.wqkv), P.bqkv); // [B·T, 3d]
      const heads = tf.transpose(qkv.reshape([B, T, 3, h, dh]), [2, 0, 3, 1, 4]); // [3, B, h, T, dh]
      const [q, k, v] = tf.unstack(heads); // [B, h, T, dh] each
      const scores = attention === "einsum" ? tf.einsum("bhqd,bhkd->bhqk", q, k) : tf.matMul(q, k, false, true); // [B, h, T, T]
      const masked = tf.where(causal(), tf.div(scores, Math.sqrt(dh)), tf.fill([B, h, T, T], -1e9));
      const context = attention === "einsum"
        ? tf.einsum("bhqk,bhkd->bhqd", tf.softmax(masked), v)
        : tf.matMul(tf.softmax(masked), v); // [B, h, T, dh]
      const merged = tf.transpose(context, [0, 2, 1, 3]).reshape([B * T, d]); // [B·T, d]
      x = tf.add(x, tf.matMul(merged, P.wo).reshape([B, T, d]));
      const mlp = tf.matMul(geluTanh(tf.add(tf.matMul(norm(x, P.g2), P.w1), P.b1)), P.w2); // [B, T, d]
      x = tf.add(x, mlp);
      const logits = tf.matMul(norm(x, P.gf).reshape([B * T, d]), P.wte, false, true); // [B·T, vocab]
      const logp = tf.logSoftmax(logits);
      return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.tensor1d(targets, "int32"), vocab), logp), -1)));
    };
    const { value, grads } = tf.valueAndGrads(loss)(params);
    return [value, ...grads];
  };
}

describe("tiny transformer LM forward+backward, wasm vs cpu", () => {
  for (const attention of ["matMul", "einsum"] as const) {
    it(`loss and all 11 parameter gradients agree (attention by ${attention})`, async () => {
      await expectParity(`transformer step (${attention})`, transformerStep(attention), 1e-5);
    });
  }
});
