/**
 * Large float32 matrix products on the wasm backend through OpenBLAS
 * `cblas_sgemm` (docs/DESIGN.md "Tensors"; machine facts: OpenBLAS runs ~100
 * GFLOP/s on one core here against ~15-30 for the wasm kernel). The operands
 * are passed to BLAS as views of the wasm heap, so nothing is copied, and
 * BLAS applies the transposes itself.
 *
 * Used when the libraries load (`src/linalg/lapack_ffi.ts`), both operands
 * are float32, the batch dimensions are equal or one side has none (a shared
 * weight), and the product is large enough to pay the FFI call. Returns
 * undefined otherwise, and the caller falls back to the wasm kernel.
 *
 * @module
 */
import { libraryFor } from "../linalg/lapack_ffi.ts";
import { tf } from "./backend.ts";
import type { WasmHeapBackend } from "./heap_view.ts";

/** Multiply-adds per matrix below which the wasm kernel is as fast as a BLAS call. */
const MIN_MACS = 1 << 16;

/** `op(a)·op(b)` by OpenBLAS into a new wasm tensor, or undefined when not applicable. */
export function blasBatchMatMul(
  backend: unknown,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo | undefined {
  if (a.dtype !== "float32" || b.dtype !== "float32" || a.shape.length < 2 || b.shape.length < 2) return undefined;
  const lib = libraryFor("matmul");
  if (!lib) return undefined;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = a.shape[ra - (transposeA ? 1 : 2)];
  const k = a.shape[ra - (transposeA ? 2 : 1)];
  const n = b.shape[rb - (transposeB ? 2 : 1)];
  if (k !== b.shape[rb - (transposeB ? 1 : 2)]) return undefined; // the wasm path reports the mismatch
  if (m * n * k < MIN_MACS) return undefined;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const countA = tf.util.sizeFromShape(batchA);
  const countB = tf.util.sizeFromShape(batchB);
  let outBatch: number[];
  if (countA === countB && batchA.length === batchB.length && batchA.every((d, i) => d === batchB[i])) outBatch = batchA;
  else if (countB === 1 && batchB.every((d) => d === 1) && batchA.length >= batchB.length) outBatch = batchA;
  else if (countA === 1 && batchA.every((d) => d === 1) && batchB.length >= batchA.length) outBatch = batchB;
  else return undefined;
  const wasm = backend as WasmHeapBackend;
  const out = wasm.makeOutput([...outBatch, m, n], "float32");
  // Heap views only after makeOutput: it may grow (and detach) the heap.
  const heapA = wasm.typedArrayFromHeap(a);
  const heapB = wasm.typedArrayFromHeap(b);
  const heapC = wasm.typedArrayFromHeap(out);
  const batches = Math.max(countA, countB);
  const lda = transposeA ? m : k;
  const ldb = transposeB ? k : n;
  for (let i = 0; i < batches; i++) {
    const offA = countA === 1 ? 0 : i * m * k;
    const offB = countB === 1 ? 0 : i * k * n;
    lib.sgemm(
      transposeA, transposeB, m, n, k,
      heapA.subarray(offA, offA + m * k), lda,
      heapB.subarray(offB, offB + k * n), ldb,
      heapC.subarray(i * m * n, (i + 1) * m * n), n,
    );
  }
  return out;
}
