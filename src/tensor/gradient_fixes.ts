/**
 * Gradient fixes for tfjs-core 4.22, on every backend (docs/DESIGN.md "Tensors":
 * whatever the model's backward pass needs).
 *
 * Gradients are registered per kernel, not per backend, so these bugs hit
 * cpu and wasm alike; each was found by the op sweep in
 * `test/tensor/op_parity.test.ts`:
 *
 * - `Cumsum` on a non-last axis: the stock gradient transposes its result
 *   (wrong shape, or silently wrong values on square axes).
 * - `BatchMatMul` with broadcast batch dimensions (`[B, T, d]·[d, n]`): the
 *   stock gradient of the broadcast operand keeps the batch dimension.
 * - `StridedSlice`, `GatherNd` and `Einsum` have no gradient.
 * - `Greater`, `Less`, `LessEqual`, `Equal`, `NotEqual`, `LogicalAnd`,
 *   `LogicalOr`, `LogicalNot` have none either, so `where(x > 0, ...)` on a
 *   differentiated `x` throws; they get a float32 zero gradient, as
 *   `GreaterEqual` already has.
 *
 * And three that are right but slow: the stock `Sum` and `Mean` gradients
 * multiply `dy` by a ones tensor of the input's shape made in JS and
 * uploaded (`makeOnesTypedArray` was 2.5% of a pretraining step on wasm);
 * here the ones come from the backend's own `OnesLike` (the same product,
 * the same bits; `broadcastTo` would run wasm's `Tile`, far slower still).
 * The stock `Relu` gradient casts `step(x)`, already float32, to float32: on
 * wasm a copy of every MLP activation (0.8% of a pretraining step); here
 * `dy · step(x)` without it, the same bits.
 *
 * Known and not fixed here (op-level code, not a kernel gradient): the
 * broadcast case of `tf.fused.matMul`'s own custom gradient; use
 * `tf.matMul` or flatten to 2-D ([B·T, d]·[d, n]) where a fused product is
 * trained. `prod` with a negative axis and `topk` have no usable gradient.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { parseEinsum } from "./einsum_plan.ts";
import { isModuloBroadcast } from "./matmul_broadcast.ts";

type Tensor = tf.Tensor;

const cumsumGrad: tf.GradConfig = {
  kernelName: "Cumsum",
  gradFunc: (dy, _saved, attrs) => ({
    x: () => tf.cumsum(dy as Tensor, attrs.axis as number, attrs.exclusive as boolean, !attrs.reverse),
  }),
};

/** `g` [...broadcast batch, r, c] summed back to the shape of `x`. */
function foldBatch(g: Tensor, x: Tensor): Tensor {
  const axes = tf.backend_util.getReductionAxes(x.shape, g.shape);
  return (axes.length > 0 ? tf.sum(g, axes) : g).reshape(x.shape);
}

const batchMatMulGrad: tf.GradConfig = {
  kernelName: "BatchMatMul",
  inputsToSave: ["a", "b"],
  gradFunc: (dy, saved, attrs) => {
    const g = dy as Tensor; // [...outBatch, m, n]
    const outBatch = g.shape.slice(0, -2);
    const spread = (x: Tensor) =>
      isModuloBroadcast(x.shape.slice(0, -2), outBatch) ? x : tf.broadcastTo(x, [...outBatch, ...x.shape.slice(-2)]);
    const [a, b] = saved;
    const tA = attrs.transposeA === true;
    const tB = attrs.transposeB === true;
    const da = () => tA ? tf.matMul(spread(b), g, tB, true) : tf.matMul(g, spread(b), false, !tB);
    const db = () => tB ? tf.matMul(g, spread(a), true, tA) : tf.matMul(spread(a), g, !tA, false);
    return { a: () => foldBatch(da(), a), b: () => foldBatch(db(), b) };
  },
};

/** Flat positions in `xShape` read by a strided slice with dense `begin`/`end`/`strides`. */
function stridedPositions(xShape: number[], begin: number[], end: number[], strides: number[]): Int32Array {
  const counts = begin.map((b, i) => {
    const span = end[i] - b;
    return span === 0 || (span < 0) !== (strides[i] < 0) ? 0 : Math.ceil(span / strides[i]);
  });
  const xStrides = tf.util.computeStrides(xShape);
  const positions = new Int32Array(tf.util.sizeFromShape(counts));
  const index = new Array<number>(counts.length).fill(0);
  for (let p = 0; p < positions.length; p++) {
    let flat = 0;
    for (let d = 0; d < counts.length; d++) flat += (begin[d] + index[d] * strides[d]) * (xStrides[d] ?? 1);
    positions[p] = flat;
    for (let d = counts.length - 1; d >= 0 && ++index[d] === counts[d]; d--) index[d] = 0;
  }
  return positions;
}

const stridedSliceGrad: tf.GradConfig = {
  kernelName: "StridedSlice",
  inputsToSave: ["x"],
  gradFunc: (dy, saved, attrs) => ({
    x: () => {
      const [x] = saved;
      const info = tf.slice_util.sliceInfo(
        x.shape,
        attrs.begin as number[],
        attrs.end as number[],
        attrs.strides as number[],
        attrs.beginMask as number,
        attrs.endMask as number,
        attrs.ellipsisMask as number,
        attrs.newAxisMask as number,
        attrs.shrinkAxisMask as number,
      );
      const positions = stridedPositions(x.shape, info.begin, info.end, info.strides);
      if (positions.length === 0) return tf.zerosLike(x);
      const indices = tf.tensor2d(positions, [positions.length, 1], "int32");
      return tf.scatterND(indices, (dy as Tensor).reshape([positions.length]), [x.size]).reshape(x.shape);
    },
  }),
};

const gatherNdGrad: tf.GradConfig = {
  kernelName: "GatherNd",
  inputsToSave: ["params", "indices"],
  gradFunc: (dy, saved) => {
    const [params, indices] = saved;
    return {
      params: () => tf.scatterND(indices, dy as Tensor, params.shape),
      indices: () => tf.zeros(indices.shape),
    };
  },
};

/**
 * d/dA of `einsum("a,b->o", A, B)` is `einsum("o,b->a'", dy, B)` with `a'`
 * the labels of `a` present in `o` or `b`, broadcast back over the labels
 * summed in A alone (symmetrically for B; one operand: `"o->a'"`).
 */
const einsumGrad: tf.GradConfig = {
  kernelName: "Einsum",
  saveAllInputs: true,
  gradFunc: (dy, saved, attrs) => {
    const { inputs, output } = parseEinsum(String(attrs.equation), saved.length);
    const grads: Record<string, () => Tensor> = {};
    saved.forEach((x, i) => {
      grads[i] = () => {
        const other = saved.length === 2 ? 1 - i : -1;
        const sources = other < 0 ? output : output + inputs[other];
        const term = inputs[i];
        const kept = [...term].filter((label) => sources.includes(label)).join("");
        const g = other < 0
          ? tf.einsum(`${output}->${kept}`, dy as Tensor)
          : tf.einsum(`${output},${inputs[other]}->${kept}`, dy as Tensor, saved[other]);
        if (kept === term) return g;
        const withOnes = [...term].map((label, axis) => (kept.includes(label) ? x.shape[axis] : 1));
        return tf.broadcastTo(g.reshape(withOnes), x.shape);
      };
    });
    return grads;
  },
};

/** `dy` of a reduction of `x` over `axes`, spread over `x`'s shape: `dy · ones`, as tfjs does, with backend-made ones. */
function spreadReduction(dy: Tensor, x: Tensor, axes: number[]): Tensor {
  const expanded = dy.reshape(x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
  return tf.mul(expanded, tf.onesLike(x));
}

const sumGrad: tf.GradConfig = {
  kernelName: "Sum",
  inputsToSave: ["x"],
  gradFunc: (dy, [x], attrs) => ({
    x: () => spreadReduction(dy as Tensor, x, tf.util.parseAxisParam(attrs.axis as number | number[], x.shape)),
  }),
};

const meanGrad: tf.GradConfig = {
  kernelName: "Mean",
  inputsToSave: ["x"],
  gradFunc: (dy, [x], attrs) => ({
    x: () => {
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const count = axes.reduce((n, a) => n * x.shape[a], 1);
      return tf.div(spreadReduction(dy as Tensor, x, axes), count);
    },
  }),
};

const reluGrad: tf.GradConfig = {
  kernelName: "Relu",
  inputsToSave: ["x"],
  gradFunc: (dy, [x]) => ({
    x: () => {
      const mask = tf.step(x); // 1 where x > 0, else 0; x's dtype
      return tf.mul(dy as Tensor, x.dtype === "float32" ? mask : tf.cast(mask, "float32"));
    },
  }),
};

const zeroGradBinary = ["Greater", "Less", "LessEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr"];

function zeroGradients(): tf.GradConfig[] {
  const binary = zeroGradBinary.map((kernelName): tf.GradConfig => ({
    kernelName,
    inputsToSave: ["a", "b"],
    gradFunc: (_dy, [a, b]) => ({ a: () => tf.zeros(a.shape), b: () => tf.zeros(b.shape) }),
  }));
  const logicalNot: tf.GradConfig = {
    kernelName: "LogicalNot",
    inputsToSave: ["x"],
    gradFunc: (_dy, [x]) => ({ x: () => tf.zeros(x.shape) }),
  };
  return [...binary, logicalNot];
}

let installed = false;

/**
 * Registers the gradient fixes listed in the module doc; idempotent. The
 * stock `Cumsum`, `BatchMatMul`, `Sum`, `Mean` and `Relu` gradients are replaced;
 * the others are added only where tfjs has none.
 */
export function installGradientFixes(): void {
  if (installed) return;
  installed = true;
  for (const config of [cumsumGrad, batchMatMulGrad, sumGrad, meanGrad, reluGrad]) tf.registerGradient(config);
  for (const config of [stridedSliceGrad, gatherNdGrad, einsumGrad, ...zeroGradients()]) {
    if (!tf.getGradient(config.kernelName)) tf.registerGradient(config);
  }
}
