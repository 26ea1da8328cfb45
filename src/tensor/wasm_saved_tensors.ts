/**
 * The gradient tape's saved tensors share their buffers on wasm instead of
 * copying them (docs/DESIGN.md "Tensors").
 *
 * tfjs-core 4.22 saves each input a kernel's gradient needs
 * (`inputsToSave`) with `engine.clone`, which runs the backend's `Identity`
 * kernel; tfjs-backend-wasm's `Identity` copies. Under `tf.grads` every
 * weight a block multiplies was therefore copied once per chunk (0.19 GB for
 * an OPT-1.3B block), and the wasm heap, which never shrinks, kept the
 * high-water mark: the VJP of one 256-token chunk grew it by 0.38 GB where
 * sharing grows it by 0.07 GB. The cpu backend's `Identity` shares the
 * buffer by reference count; this does the same for saved tensors, same
 * shape and dtype, so the wasm backend's per-buffer shape stays right.
 * Tensors are immutable, so a shared buffer is never written through.
 * (`Identity` itself is left copying: kernel code may rely on an own buffer.)
 *
 * The tensors a `tf.customGrad` function saves (its `save` argument) take
 * another route, `engine.clone`, which tfjs-core calls for nothing else; it
 * shares the same way. On the fixtures/base shape those copies (attention's
 * and LayerNorm's saved inputs, the LM loss's) were 2.1% of a pretraining
 * worker's CPU time (`node --cpu-prof`, 2026-12-04). The stock `clone` also
 * records a tape node (a Cast gradient) for the copy; a saved tensor is read
 * only by its op's own gradient function, never differentiated through, so
 * the shared one records none, as the kernel saves above do not.
 *
 * @module
 */
import { tf } from "./backend.ts";

interface RefCountingBackend {
  incRef(dataId: unknown): void;
}

interface TapeEngine {
  backend: unknown;
  keep<T extends tf.Tensor>(t: T): T;
  makeTensorFromTensorInfo(info: tf.TensorInfo, backend?: unknown): tf.Tensor;
  saveTensorsForBackwardMode(tensors: tf.Tensor[]): tf.Tensor[];
  clone(x: tf.Tensor): tf.Tensor;
}

/** Makes the engine's tape (kernel saves and customGrad saves) save tensors by reference on the wasm backend; idempotent. */
export function shareSavedTensors(): void {
  const engine = tf.engine() as unknown as TapeEngine;
  /** A new tensor handle on `t`'s buffer, its reference counted. */
  const shared = (self: TapeEngine, t: tf.Tensor): tf.Tensor => {
    const backend = self.backend as Partial<RefCountingBackend>;
    if (typeof backend.incRef !== "function") throw new Error("shareSavedTensors: the backend counts no references");
    backend.incRef(t.dataId);
    return self.makeTensorFromTensorInfo({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
  };
  engine.saveTensorsForBackwardMode = function (this: TapeEngine, tensors: tf.Tensor[]): tf.Tensor[] {
    return tensors.map((t) => this.keep(shared(this, t)));
  };
  engine.clone = function (this: TapeEngine, x: tf.Tensor): tf.Tensor {
    return shared(this, x);
  };
}
