/**
 * Composing wasm kernels inside a wasm kernel (docs/DESIGN.md "Tensors": kernel
 * gaps are fixed once, in `tensor/`).
 *
 * The kernel fixes work below the engine, on `TensorInfo`s, by calling the
 * backend's own kernels (Transpose, Reshape, Tile, Sum, BatchMatMul, ...).
 * Nothing there is a tracked `tf.Tensor`, so `tf.tidy` cannot free the
 * intermediates: a {@link WasmScope} records them and `close()` hands each
 * back to the backend (`disposeData`), on success and on error alike.
 *
 * @module
 */
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { tf } from "./backend.ts";

/** Inputs of a kernel call, by the kernel's input names (`a`, `b`, `x`, ...). */
export type KernelInputs = Record<string, tf.TensorInfo | undefined>;

/** Attributes of a kernel call (`perm`, `shape`, `axis`, ...). */
export type KernelAttrs = tf.NamedAttrMap;

/** Narrows the `backend` argument of a kernel function to the wasm backend. */
export function asWasmBackend(backend: unknown): BackendWasm {
  const wasm = backend as Partial<BackendWasm> | undefined;
  if (!wasm || typeof wasm.makeOutput !== "function" || typeof wasm.typedArrayFromHeap !== "function") {
    throw new Error("Wasm kernel fix called with a backend that is not the wasm backend");
  }
  return wasm as BackendWasm;
}

/** Runs the kernel registered as `name` for wasm, one output expected. */
function runWasmKernel(
  backend: BackendWasm,
  name: string,
  inputs: KernelInputs,
  attrs: KernelAttrs = {},
): tf.TensorInfo {
  const config = tf.getKernel(name, "wasm");
  if (!config) throw new Error(`Kernel "${name}" is not registered for the wasm backend`);
  const out = config.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) {
    throw new Error(`Kernel "${name}" returned ${out.length} outputs where one was expected`);
  }
  return out;
}

/**
 * Owner of the temporaries of one kernel call: `temp*` results are released
 * by {@link WasmScope.close}; `run` results belong to the caller.
 */
export class WasmScope {
  readonly backend: BackendWasm;
  #temps: tf.TensorInfo[] = [];

  constructor(backend: BackendWasm) {
    this.backend = backend;
  }

  /** Records `info` as a temporary of this scope and returns it. */
  keep(info: tf.TensorInfo): tf.TensorInfo {
    this.#temps.push(info);
    return info;
  }

  /** Runs a wasm kernel whose output is a temporary of this scope. */
  temp(name: string, inputs: KernelInputs, attrs: KernelAttrs = {}): tf.TensorInfo {
    return this.keep(runWasmKernel(this.backend, name, inputs, attrs));
  }

  /** Runs a wasm kernel whose output the caller owns. */
  run(name: string, inputs: KernelInputs, attrs: KernelAttrs = {}): tf.TensorInfo {
    return runWasmKernel(this.backend, name, inputs, attrs);
  }

  /** A temporary view of `x` with a new shape (no copy: Reshape shares data). */
  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.temp("Reshape", { x }, { shape });
  }

  /** `x` permuted by `perm`, or `x` itself when `perm` is the identity. */
  transpose(x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
    return perm.every((p, i) => p === i) ? x : this.temp("Transpose", { x }, { perm });
  }

  /** Releases every temporary; the scope may not be used afterwards. */
  close(): void {
    for (const info of this.#temps) this.backend.disposeData(info.dataId);
    this.#temps = [];
  }
}

/** Runs `body` with a fresh scope and releases its temporaries afterwards. */
export function withWasmScope<T>(backend: unknown, body: (scope: WasmScope) => T): T {
  const scope = new WasmScope(asWasmBackend(backend));
  try {
    return body(scope);
  } finally {
    scope.close();
  }
}
