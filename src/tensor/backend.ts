/**
 * Backend choice, in one place (docs/DESIGN.md "Tensors").
 *
 * Order: `tensorflow` (tfjs-node-gpu, then tfjs-node) when importable, else
 * `wasm` (tfjs-backend-wasm, with our kernel fixes), `cpu` only on request.
 * `OFFTUNE_BACKEND` or an explicit name override the order. The choice is
 * logged once to stderr unless `quiet`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The backends offtune knows how to start. */
export type BackendName = "tensorflow" | "wasm" | "cpu";

/** tfjs, re-exported so every module uses the one instance the backend was set on. */
export { tf };

let chosen: BackendName | undefined;
const kernelFixers: Array<(backend: BackendName) => void> = [];

/**
 * Registers a hook run once after a backend is set, so kernel fixes (for
 * example the wasm transposed-matmul override) live in their own modules.
 */
export function onBackendReady(fix: (backend: BackendName) => void): void {
  kernelFixers.push(fix);
  if (chosen) fix(chosen);
}

async function tryNativeTensorflow(): Promise<boolean> {
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      await import(pkg);
      if (await tf.setBackend("tensorflow")) return true;
    } catch {
      // Not installed here: fall through to the next candidate.
    }
  }
  return false;
}

function wasmDirectory(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve("@tensorflow/tfjs-backend-wasm");
  return join(dirname(entry), "/");
}

/** The process-wide error events whose listeners {@link withoutNewErrorListeners} guards. */
const ERROR_EVENTS = ["uncaughtException", "unhandledRejection"] as const;

interface ProcessEvents {
  listeners(event: string): Array<(...args: unknown[]) => void>;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
}

/**
 * Runs `start` and removes the `uncaughtException` and `unhandledRejection`
 * listeners it added to the process. The wasm backend's Emscripten glue adds
 * listeners that rethrow every uncaught error from inside its minified
 * bundle: Node then prints that bundle's one ~39 KB source line above the
 * error and exits with code 7. Without them an uncaught error prints its own
 * message and stack, and the CLI's handlers (pipelines/offtune.ts) apply.
 */
async function withoutNewErrorListeners<T>(start: () => Promise<T>): Promise<T> {
  const proc = (globalThis as { process?: Partial<ProcessEvents> }).process;
  if (typeof proc?.listeners !== "function" || typeof proc.removeListener !== "function") return await start();
  const events = proc as ProcessEvents;
  const before = new Map(ERROR_EVENTS.map((e) => [e, new Set(events.listeners(e))]));
  try {
    return await start();
  } finally {
    for (const e of ERROR_EVENTS) {
      for (const listener of events.listeners(e)) if (!before.get(e)!.has(listener)) events.removeListener(e, listener);
    }
  }
}

async function startWasm(): Promise<boolean> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  wasm.setWasmPaths(wasmDirectory());
  if (!(await withoutNewErrorListeners(() => tf.setBackend("wasm")))) return false;
  const { installWasmKernelFixes } = await import("./wasm_kernels.ts");
  installWasmKernelFixes();
  const { shareSavedTensors } = await import("./wasm_saved_tensors.ts");
  shareSavedTensors();
  const { tuneHeapGrowth } = await import("./wasm_heap_growth.ts");
  tuneHeapGrowth();
  return true;
}

function requestedName(requested?: string): BackendName | undefined {
  const name = requested ?? readEnv("OFFTUNE_BACKEND");
  if (name === undefined || name === "" || name === "auto") return undefined;
  if (name === "tensorflow" || name === "wasm" || name === "cpu") return name;
  throw new Error(
    `Unknown backend "${name}": expected one of auto, tensorflow, wasm, cpu`,
  );
}

function readEnv(key: string): string | undefined {
  return (globalThis as { process?: { env: Record<string, string | undefined> } })
    .process?.env[key];
}

/**
 * Starts the tensor backend (idempotent) and returns its name.
 *
 * @param requested `"auto"`, `"tensorflow"`, `"wasm"` or `"cpu"`; defaults to
 *   `OFFTUNE_BACKEND`, then auto.
 * @param quiet suppress the one-line log of the choice.
 */
export async function initBackend(
  requested?: string,
  quiet = readEnv("OFFTUNE_QUIET") === "1",
): Promise<BackendName> {
  const want = requestedName(requested);
  if (chosen && (want === undefined || want === chosen)) return chosen;
  let ok = false;
  let name: BackendName;
  if (want === "cpu") {
    name = "cpu";
    ok = await tf.setBackend("cpu");
  } else if (want === "wasm") {
    name = "wasm";
    ok = await startWasm();
  } else if (want === "tensorflow") {
    name = "tensorflow";
    ok = await tryNativeTensorflow();
  } else {
    name = "tensorflow";
    ok = await tryNativeTensorflow();
    if (!ok) {
      name = "wasm";
      ok = await startWasm();
    }
  }
  if (!ok) throw new Error(`Cannot start the "${name}" tensor backend`);
  await tf.ready();
  const { installGradientFixes } = await import("./gradient_fixes.ts");
  installGradientFixes();
  chosen = name;
  for (const fix of kernelFixers) fix(name);
  if (!quiet) console.error(`offtune: tensor backend ${name}`);
  return name;
}

/** The backend started by {@link initBackend}, or undefined before it ran. */
export function currentBackend(): BackendName | undefined {
  return chosen;
}
