/**
 * `Einsum` for the wasm backend (docs/DESIGN.md "Tensors"), missing in
 * tfjs-backend-wasm 4.22. Runs the plan of `einsum_plan.ts` with the wasm
 * Sum, Transpose, Reshape and (plain, fast) BatchMatMul kernels; the
 * equations supported are listed there.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { parseEinsum, planEinsum } from "./einsum_plan.ts";
import { withWasmScope } from "./wasm_scope.ts";

/** Kernel function of `Einsum` on wasm (one or two operands). */
export const einsumKernel: tf.KernelFunc = ({ inputs, backend, attrs }) =>
  withWasmScope(backend, (scope) => {
    const operands = Object.values(inputs) as tf.TensorInfo[];
    const equation = String(attrs?.equation);
    const plan = planEinsum(parseEinsum(equation, operands.length), operands.map((t) => t.shape));
    const prepared = operands.map((x, i) => {
      const reduced = plan.sumAxes[i].length > 0
        ? scope.temp("Sum", { x }, { axis: plan.sumAxes[i], keepDims: false })
        : x;
      return scope.transpose(reduced, plan.perms[i]);
    });
    let product = prepared[0];
    if (prepared.length === 2) {
      const [a, b] = prepared;
      if (a.dtype !== "float32" || b.dtype !== "float32") {
        throw new Error(
          `Einsum "${equation}" on wasm contracts float32 operands only, got ${a.dtype} and ${b.dtype}`,
        );
      }
      product = scope.temp("BatchMatMul", {
        a: scope.reshape(a, plan.matShapes[0]), // [batch, freeA, contracted]
        b: scope.reshape(b, plan.matShapes[1]), // [batch, contracted, freeB]
      }, { transposeA: false, transposeB: false });
    }
    if (plan.outPerm.every((p, i) => p === i)) return scope.run("Reshape", { x: product }, { shape: plan.outShape });
    return scope.run("Transpose", { x: scope.reshape(product, plan.resultShape) }, { perm: plan.outPerm });
  });
