/**
 * `UnsortedSegmentSum` for the wasm backend (docs/DESIGN.md "Tensors"), missing
 * in tfjs-backend-wasm 4.22. It is the gradient of `gather`, so without it
 * no embedding table can be trained on wasm.
 *
 * A JS loop over the wasm heap: `out[ids[i]] += x[i]` row by row. Ids
 * outside `[0, numSegments)` are dropped, as the cpu backend does. Heap
 * views are taken only after `makeOutput`, which may grow (and so detach)
 * the heap.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { asWasmBackend } from "./wasm_scope.ts";

/** Kernel function of `UnsortedSegmentSum` on wasm (float32 and int32 data). */
export const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = asWasmBackend(backend);
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = attrs?.numSegments as number;
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum needs a non-negative integer numSegments, got ${numSegments}`);
  }
  if (segmentIds.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum needs int32 segmentIds, got ${segmentIds.dtype}`);
  }
  if (x.dtype !== "float32" && x.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32 data, got ${x.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  if (idRank > x.shape.length || segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(
      `UnsortedSegmentSum needs segmentIds shape [${segmentIds.shape}] to be a prefix of x shape [${x.shape}]`,
    );
  }
  const rowShape = x.shape.slice(idRank);
  const rowSize = tf.util.sizeFromShape(rowShape);
  const rows = tf.util.sizeFromShape(segmentIds.shape);
  const out = wasm.makeOutput([numSegments, ...rowShape], x.dtype);
  const values = wasm.typedArrayFromHeap(x);
  const ids = wasm.typedArrayFromHeap(segmentIds);
  const sums = wasm.typedArrayFromHeap(out);
  sums.fill(0);
  for (let i = 0; i < rows; i++) {
    const segment = ids[i];
    if (segment < 0 || segment >= numSegments) continue;
    const from = i * rowSize;
    const to = segment * rowSize;
    for (let j = 0; j < rowSize; j++) sums[to + j] += values[from + j];
  }
  return out;
};
