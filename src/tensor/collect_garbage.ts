/**
 * A full garbage collection on request, for the streaming operators to call
 * between blocks (docs/DESIGN.md "The shape"). Each block leaves hundreds of MB of
 * dead typed arrays behind (weights read from disk, chunk copies, KFAC
 * matrices); V8 frees them only when a full collection runs, which it
 * schedules lazily, so without this the dead blocks pile up and the peak RSS
 * holds several blocks instead of one. The `gc` function is the one V8
 * exposes with `--expose-gc` (enabled at run time here); where the runtime
 * does not allow it this is a no-op.
 *
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";

let collector: (() => void) | undefined | null = null;

function findCollector(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === "function") return exposed;
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a full garbage collection now, when the runtime allows it (else does nothing). */
export function collectGarbage(): void {
  if (collector === null) collector = findCollector();
  collector?.();
}
