/**
 * `GatherV2` of whole rows for the wasm backend (docs/DESIGN.md "Tensors").
 *
 * tfjs-backend-wasm 4.22 gathers value by value, working out every output
 * value's source index: 35–45 ns a value, 13–18 ms for 512 rows of a
 * 768-wide table, where copying the rows takes a fraction of a millisecond.
 * Every embedding lookup is such a gather (a GradOT build's calibration
 * embedding: 4 chunks of 512 tokens; every step of `tune`, `eval` and
 * `pretrain`). This wrapper copies the rows straight from the table's heap
 * memory into the output's: the same values, so the same bits. Gathers along
 * another axis, with batch dimensions, of no rows or of non-float32 values
 * go to the stock kernel.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { asWasmBackend } from "./wasm_scope.ts";

/**
 * Copies rows `indices` of the row-major `[rows, width]` `table` into `out`
 * (`[indices.length, width]`), in order.
 *
 * @throws RangeError naming the first index outside `[0, rows)`
 */
export function gatherRowsInto(table: Float32Array, rows: number, width: number, indices: Int32Array, out: Float32Array): void {
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i];
    if (!(row >= 0 && row < rows)) throw new RangeError(`GatherV2: index ${row} (position ${i}) is not in [0, ${rows - 1}]`);
    out.set(table.subarray(row * width, (row + 1) * width), i * width);
  }
}

/** Wraps the stock wasm `GatherV2` kernel so row gathers of float32 tables are row copies. */
export function fixRowGather(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const { x, indices } = inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const axis = Number(attrs?.axis ?? 0);
    const batchDims = Number(attrs?.batchDims ?? 0);
    const rank = x.shape.length;
    const picks = tf.util.sizeFromShape(indices.shape);
    if (x.dtype !== "float32" || indices.dtype !== "int32" || rank === 0 || picks === 0 || batchDims !== 0 || (axis !== 0 && axis !== -rank)) {
      return original(args);
    }
    const wasm = asWasmBackend(backend);
    const rows = x.shape[0];
    const width = tf.util.sizeFromShape(x.shape.slice(1));
    const out = wasm.makeOutput([...indices.shape, ...x.shape.slice(1)], "float32");
    // Views only after makeOutput: it may grow the heap.
    const table = wasm.typedArrayFromHeap(x) as Float32Array; // [rows, width]
    const picked = wasm.typedArrayFromHeap(indices) as Int32Array; // [m]
    const values = wasm.typedArrayFromHeap(out) as Float32Array; // [m, width]
    try {
      gatherRowsInto(table, rows, width, picked, values);
    } catch (e) {
      wasm.disposeData(out.dataId);
      throw e;
    }
    return out;
  };
}
