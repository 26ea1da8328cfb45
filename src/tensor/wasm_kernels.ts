/**
 * The wasm kernel fixes, installed together (docs/DESIGN.md "Tensors": kernel
 * gaps on wasm are fixed once, in `tensor/`).
 *
 * - `BatchMatMul` (`wasm_matmul.ts`): transposed forms 5-90x slower than
 *   the plain product (`bench.ts`); `[2,1]·[1,3]` batch broadcasts wrong.
 * - `_FusedMatMul` (`wasm_matmul.ts`): the same slowness; wrong past the
 *   first batch with a bias or an activation; bias of rank > 1 rejected,
 *   bias of size 1 misread.
 * - `Sum` (`wasm_leading_sum.ts`): over leading axes (every bias and
 *   LayerNorm gradient) it transposes its whole input first; same bits without.
 * - `GatherV2` (`wasm_gather.ts`): value by value, 35–45 ns a value; an
 *   embedding lookup's rows are copied whole instead, same bits.
 * - `UnsortedSegmentSum` (`wasm_segment_sum.ts`): missing; the gradient of
 *   `gather`.
 * - `Einsum` (`wasm_einsum.ts`): missing.
 *
 * Every other kernel a transformer LM forward+backward needs is registered
 * on wasm (checked op by op against cpu in `test/tensor/op_parity.test.ts`);
 * gradient bugs shared by all backends are fixed in `gradient_fixes.ts`.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { fixBatchMatMul, fixFusedMatMul } from "./wasm_matmul.ts";
import { einsumKernel } from "./wasm_einsum.ts";
import { unsortedSegmentSumKernel } from "./wasm_segment_sum.ts";
import { fixLeadingSum } from "./wasm_leading_sum.ts";
import { fixRowGather } from "./wasm_gather.ts";

/** Kernels whose wasm implementation is wrapped (the original is kept). */
export type WrappedWasmKernel = "BatchMatMul" | "_FusedMatMul" | "Sum" | "GatherV2";

const wrappers: Record<WrappedWasmKernel, (original: tf.KernelFunc) => tf.KernelFunc> = {
  BatchMatMul: fixBatchMatMul,
  _FusedMatMul: fixFusedMatMul,
  Sum: fixLeadingSum,
  GatherV2: fixRowGather,
};

const missing: Record<string, tf.KernelFunc> = {
  UnsortedSegmentSum: unsortedSegmentSumKernel,
  Einsum: einsumKernel,
};

const originals = new Map<WrappedWasmKernel, tf.KernelFunc>();

/**
 * Installs the wasm kernel fixes into tfjs' kernel registry; idempotent.
 * Called by `initBackend` right after the wasm backend is set. Kernels that
 * a later tfjs-backend-wasm registers itself are left alone.
 */
export function installWasmKernelFixes(): void {
  for (const name of Object.keys(wrappers) as WrappedWasmKernel[]) {
    if (originals.has(name)) continue;
    const config = tf.getKernel(name, "wasm");
    if (!config) throw new Error(`Cannot fix wasm kernel "${name}": it is not registered`);
    originals.set(name, config.kernelFunc);
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({ ...config, kernelFunc: wrappers[name](config.kernelFunc) });
  }
  for (const [name, kernelFunc] of Object.entries(missing)) {
    if (!tf.getKernel(name, "wasm")) tf.registerKernel({ kernelName: name, backendName: "wasm", kernelFunc });
  }
}

/**
 * The wasm kernel that {@link installWasmKernelFixes} wrapped, for
 * benchmarks and tests that compare against it; undefined before install.
 */
export function originalWasmKernel(name: WrappedWasmKernel): tf.KernelFunc | undefined {
  return originals.get(name);
}
