/**
 * Reading tensor values off the wasm heap without copying them: pure-JS
 * numerics on a block's weights (GCS scoring, SVD input, SCP pruning) then
 * add no weight-sized copy to the peak memory (docs/DESIGN.md "Scale").
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { currentBackend, tf } from "./backend.ts";

/** The heap access of tfjs-backend-wasm's `BackendWasm` (not in its typings). */
export interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
}

/**
 * A new float32 tensor of `shape` whose values `fill` writes into the array
 * it is given: on the wasm backend straight into the tensor's heap memory
 * (the array is a heap view: `fill` must not run tensor ops), elsewhere into
 * a JS array handed to `tf.tensor`. Loading weights this way allocates no
 * whole-tensor JS array. If `fill` throws, nothing is left allocated.
 */
export function filledTensor(shape: number[], fill: (out: Float32Array) => void): Tensor {
  if (currentBackend() !== "wasm") {
    const out = new Float32Array(tf.util.sizeFromShape(shape));
    fill(out);
    return tf.tensor(out, shape);
  }
  const backend = tf.backend() as unknown as WasmHeapBackend;
  const info = backend.makeOutput(shape, "float32");
  try {
    fill(backend.typedArrayFromHeap(info));
  } catch (e) {
    backend.disposeData(info.dataId);
    throw e;
  }
  return tf.engine().makeTensorFromTensorInfo(info);
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
