/**
 * Reading tensor values off the wasm heap without copying them: pure-JS
 * numerics on a block's weights (GCS scoring, SVD input, SCP pruning) then
 * add no weight-sized copy to the peak memory (DESIGN.md "Scale").
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { currentBackend, tf } from "./backend.ts";

/** The heap access of tfjs-backend-wasm's `BackendWasm` (not in its typings). */
export interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

/**
 * A float32 tensor's values: a view of the wasm heap on the wasm backend,
 * else a copy (`dataSync`). The view is valid only until the next tensor is
 * made or op is run (either may grow the heap and detach it) and must not be
 * written: read it at once and keep no reference.
 */
export function peekValues(t: Tensor): Float32Array {
  if (t.dtype !== "float32") throw new Error(`peekValues reads float32 tensors, got ${t.dtype}`);
  if (currentBackend() === "wasm") {
    return (tf.backend() as unknown as WasmHeapBackend).typedArrayFromHeap(t);
  }
  return t.dataSync() as Float32Array;
}
