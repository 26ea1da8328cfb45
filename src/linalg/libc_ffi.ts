/**
 * The glibc memory calls the build tunes its memory with, through the FFI
 * both runtimes have (`koffi` on Node, `Deno.dlopen` on Deno, as LAPACK's:
 * src/linalg/lapack_ffi.ts): `mallopt` (src/distributed/freed_memory.ts) and
 * `madvise` (src/tensor/wasm_heap_growth.ts). Typed arrays are passed by
 * pointer, not copied.
 *
 * @module
 */
import { createRequire } from "node:module";

/** The bound calls; each returns what glibc's does. */
export interface LibcMemoryCalls {
  /** `mallopt(param, value)`: 1 when glibc took the setting. */
  mallopt(param: number, value: number): number;
  /** `madvise(addr, length, advice)` over `view`'s bytes: 0 on success. */
  madvise(view: Uint8Array, advice: number): number;
}

interface DenoFfi {
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: { mallopt(param: number, value: number): number; madvise(view: Uint8Array, length: number | bigint, advice: number): number };
  };
}

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => number };
}

let bound: LibcMemoryCalls | null | undefined;

/**
 * glibc's memory calls, bound once per thread; undefined where there are
 * none (another C library, or no FFI permission), which changes nothing but
 * the speed.
 */
export function libcMemoryCalls(): LibcMemoryCalls | undefined {
  if (bound === undefined) bound = bind() ?? null;
  return bound ?? undefined;
}

function bind(): LibcMemoryCalls | undefined {
  try {
    if ("Deno" in globalThis) {
      const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
      const { symbols } = deno.dlopen("libc.so.6", {
        mallopt: { parameters: ["i32", "i32"], result: "i32" },
        madvise: { parameters: ["buffer", "usize", "i32"], result: "i32" },
      });
      return { mallopt: symbols.mallopt, madvise: (view, advice) => symbols.madvise(view, BigInt(view.byteLength), advice) };
    }
    const libc = (createRequire(import.meta.url)("koffi") as Koffi).load("libc.so.6");
    const mallopt = libc.func("int mallopt(int param, int value)");
    const madvise = libc.func("int madvise(void *addr, size_t length, int advice)");
    return { mallopt: (param, value) => mallopt(param, value), madvise: (view, advice) => madvise(view, view.byteLength, advice) };
  } catch {
    return undefined;
  }
}
