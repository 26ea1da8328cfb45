/**
 * Fast transposed and correctly broadcast matrix products on the wasm backend
 * (docs/DESIGN.md "Tensors": transposed `BatchMatMul`/`_FusedMatMul`).
 *
 * tfjs-backend-wasm 4.22 runs `matMul` with `transposeA` or `transposeB` an
 * order of magnitude slower than the plain product (see `benchMatmul` in
 * `bench.ts`), and every backward pass of a linear layer asks for one of
 * the transposed forms (`dy·Wᵀ`, `xᵀ·dy`). The wrappers here transpose the
 * operands with the wasm Transpose kernel (O(n²) work) and hand the plain
 * O(n³) product to the original kernel. They also broadcast the batch
 * dimensions explicitly where the original kernel's modulo indexing is wrong
 * (see `matmul_broadcast.ts`). The original `_FusedMatMul` is wrong past
 * the first batch whenever a bias or an activation is fused, takes a
 * rank-1 bias only and reads past a bias of size 1; its wrapper calls it
 * with one batch and a full bias vector only, and falls back to separate
 * kernels otherwise.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { isModuloBroadcast } from "./matmul_broadcast.ts";
import { blasBatchMatMul } from "./wasm_blas_matmul.ts";
import { type WasmScope, withWasmScope } from "./wasm_scope.ts";

interface PlainOperands {
  a: tf.TensorInfo;
  b: tf.TensorInfo;
}

function swapLastTwo(scope: WasmScope, x: tf.TensorInfo): tf.TensorInfo {
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return scope.transpose(x, perm);
}

/** `x` [...batch, r, c] tiled to [...outBatch, r, c]. */
function broadcastBatch(scope: WasmScope, x: tf.TensorInfo, outBatch: number[]): tf.TensorInfo {
  const batch = x.shape.slice(0, -2);
  const matrix = x.shape.slice(-2);
  const padded = [...new Array<number>(outBatch.length - batch.length).fill(1), ...batch];
  const reps = [...outBatch.map((d, i) => d / padded[i]), 1, 1];
  return scope.temp("Tile", { x: scope.reshape(x, [...padded, ...matrix]) }, { reps });
}

/**
 * The operands of `op(a)·op(b)` rewritten for the plain kernel: transposes
 * applied, batch dimensions broadcast where modulo indexing would be wrong.
 */
function plainOperands(
  scope: WasmScope,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): PlainOperands {
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new Error(`Cannot matMul shapes [${a.shape}] and [${b.shape}]: both operands need rank 2 or more`);
  }
  const innerA = a.shape[a.shape.length - (transposeA ? 2 : 1)];
  const innerB = b.shape[b.shape.length - (transposeB ? 1 : 2)];
  if (innerA !== innerB) {
    throw new Error(
      `Cannot matMul shapes [${a.shape}] and [${b.shape}] (transposeA=${transposeA}, ` +
        `transposeB=${transposeB}): inner dimensions ${innerA} and ${innerB} differ`,
    );
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const outBatch = tf.backend_util.assertAndGetBroadcastShape(batchA, batchB);
  let plainA = transposeA ? swapLastTwo(scope, a) : a;
  let plainB = transposeB ? swapLastTwo(scope, b) : b;
  if (!isModuloBroadcast(batchA, outBatch)) plainA = broadcastBatch(scope, plainA, outBatch);
  if (!isModuloBroadcast(batchB, outBatch)) plainB = broadcastBatch(scope, plainB, outBatch);
  return { a: plainA, b: plainB };
}

/**
 * `b` itself, or a copy of it when its buffer is shared (a Reshape view, or
 * a tensor the gradient tape saved, `wasm_saved_tensors.ts`). The original
 * kernels cache their XNNPACK operator by the weight buffer's id, packed
 * for the first shape seen: a shared buffer multiplied again under another
 * shape reused that operator and gave wrong products. A copy has an id of
 * its own.
 */
function ownWeights(scope: WasmScope, b: tf.TensorInfo): tf.TensorInfo {
  return scope.backend.refCount(b.dataId) > 1 ? scope.temp("Identity", { x: b }) : b;
}

/**
 * Wraps the original wasm `BatchMatMul` kernel: large float32 products go to
 * OpenBLAS (`wasm_blas_matmul.ts`); otherwise every transposeA/transposeB
 * combination and every broadcastable batch shape ends in one plain call.
 */
export function fixBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return ({ inputs, backend, attrs }) =>
    withWasmScope(backend, (scope) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const transposeA = attrs?.transposeA === true;
      const transposeB = attrs?.transposeB === true;
      const viaBlas = blasBatchMatMul(backend, a, b, transposeA, transposeB);
      if (viaBlas) return viaBlas;
      const plain = plainOperands(scope, a, b, transposeA, transposeB);
      return original({ inputs: { a: plain.a, b: ownWeights(scope, plain.b) }, backend, attrs: { transposeA: false, transposeB: false } });
    });
}

/** The fused activation applied by the caller-owned last kernel of the fallback path. */
function activate(
  scope: WasmScope,
  x: tf.TensorInfo,
  activation: string,
  preluWeights: tf.TensorInfo | undefined,
  leakyreluAlpha: number,
): tf.TensorInfo {
  switch (activation) {
    case "relu":
      return scope.run("Relu", { x });
    case "relu6":
      return scope.run("Relu6", { x });
    case "elu":
      return scope.run("Elu", { x });
    case "sigmoid":
      return scope.run("Sigmoid", { x });
    case "leakyrelu":
      return scope.run("LeakyRelu", { x }, { alpha: leakyreluAlpha });
    case "prelu":
      if (!preluWeights) throw new Error(`Fused matMul activation "prelu" needs preluActivationWeights`);
      return scope.run("Prelu", { x, alpha: preluWeights });
    default:
      throw new Error(`Unknown fused matMul activation "${activation}"`);
  }
}

/**
 * `bias` of shape [], [c] or [1, ..., 1, c] (c = `cols` or 1) as the
 * [cols] vector the kernel takes. The kernel checks the rank stored with
 * the data (a Reshape view is not enough) and reads `cols` values without
 * broadcasting a single one, so other shapes are copied or tiled.
 */
function vectorOf(scope: WasmScope, bias: tf.TensorInfo, cols: number): tf.TensorInfo {
  const n = bias.shape.length === 0 ? 1 : bias.shape[bias.shape.length - 1];
  if (n !== cols) return scope.temp("Tile", { x: scope.reshape(bias, [n]) }, { reps: [cols] }); // [cols]
  if (bias.shape.length === 1) return bias;
  return scope.temp("Identity", { x: scope.reshape(bias, [n]) }); // [cols]
}

/** `op(product + bias)` by separate kernels; the caller owns the result. */
function unfused(
  scope: WasmScope,
  plain: PlainOperands,
  bias: tf.TensorInfo | undefined,
  activation: string,
  preluWeights: tf.TensorInfo | undefined,
  leakyreluAlpha: number,
): tf.TensorInfo {
  const attrs = { transposeA: false, transposeB: false };
  if (!bias && activation === "linear") return scope.run("BatchMatMul", { ...plain }, attrs);
  const product = scope.temp("BatchMatMul", { ...plain }, attrs);
  if (!bias) return activate(scope, product, activation, preluWeights, leakyreluAlpha);
  if (activation === "linear") return scope.run("Add", { a: product, b: bias });
  return activate(scope, scope.temp("Add", { a: product, b: bias }), activation, preluWeights, leakyreluAlpha);
}

/**
 * Wraps the original wasm `_FusedMatMul` kernel, which is right for one
 * batch only: with a bias, or an activation at sizes past ~64, batches after
 * the first come out wrong (max abs error ~1-10 on N(0,1) data). So:
 * transposes as in {@link fixBatchMatMul}; one batch goes to the kernel as
 * is; batches sharing one `b` (a linear layer on [B, T, d]) are folded into
 * the rows of a single [1, B·T, d] call; a bias of shape [1, ..., 1, n] or
 * a scalar is turned into the [n] vector the kernel takes. Everything else
 * (batched `b` with a bias or activation, a bias varying along rows) runs
 * as plain BatchMatMul, Add and the activation kernel (cpu's semantics).
 */
export function fixFusedMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return ({ inputs, backend, attrs }) =>
    withWasmScope(backend, (scope) => {
      const { a, b, bias, preluActivationWeights } = inputs;
      if (!a || !b) throw new Error("Fused matMul needs both operands a and b");
      const activation = (attrs?.activation as string | undefined) ?? "linear";
      const leakyreluAlpha = (attrs?.leakyreluAlpha as number | undefined) ?? 0.2;
      const plain = plainOperands(scope, a, b, attrs?.transposeA === true, attrs?.transposeB === true);
      const outBatch = tf.backend_util.assertAndGetBroadcastShape(
        plain.a.shape.slice(0, -2),
        plain.b.shape.slice(0, -2),
      );
      const [rows, inner] = plain.a.shape.slice(-2);
      const cols = plain.b.shape[plain.b.shape.length - 1];
      const rowBias = bias === undefined || bias.shape.slice(0, -1).some((d) => d !== 1)
        ? undefined
        : vectorOf(scope, bias, cols);
      if (bias !== undefined && rowBias === undefined) {
        return unfused(scope, plain, bias, activation, preluActivationWeights, leakyreluAlpha);
      }
      const fusedAttrs = { transposeA: false, transposeB: false, activation, leakyreluAlpha };
      const call = (x: tf.TensorInfo, w: tf.TensorInfo) =>
        original({
          inputs: { a: x, b: ownWeights(scope, w), bias: rowBias, preluActivationWeights },
          backend,
          attrs: fusedAttrs,
        }) as tf.TensorInfo;
      const batches = tf.util.sizeFromShape(outBatch);
      if (batches === 1) return call(plain.a, plain.b);
      if (tf.util.sizeFromShape(plain.b.shape.slice(0, -2)) !== 1) {
        return unfused(scope, plain, bias, activation, preluActivationWeights, leakyreluAlpha);
      }
      const folded = scope.keep(call(
        scope.reshape(plain.a, [1, batches * rows, inner]), // [1, B·m, k]
        scope.reshape(plain.b, [1, inner, cols]), // [1, k, n]
      ));
      return scope.run("Reshape", { x: folded }, { shape: [...outBatch, rows, cols] });
    });
}
