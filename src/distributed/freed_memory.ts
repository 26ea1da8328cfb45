/**
 * Keeping freed memory in the process for its next allocations, instead of
 * handing it back to the kernel (glibc's `mallopt`, through the FFI both
 * runtimes have: `koffi` on Node, `Deno.dlopen` on Deno).
 *
 * Why: a 2-slot GradOT build moves hundreds of MB of arrays between its
 * threads per block (chunks' inputs and gradients, block jobs). By default
 * glibc serves an array over its mmap threshold (128 KiB at first) with a
 * fresh mapping and unmaps it when freed, and trims freed memory at the top
 * of a heap; every page of the next array is then a fresh page, whose first
 * touch costs a page fault and the kernel zeroing it (docs/DISTRIBUTED.md
 * "Freed memory stays in the process"). With the settings below, freed
 * arrays up to 32 MiB go back to the heap and are reused.
 *
 * @module
 */
import { createRequire } from "node:module";

/** `mallopt` parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_TOP_PAD = -2;
const M_MMAP_THRESHOLD = -3;

/**
 * What {@link keepFreedMemory} sets, as `mallopt` (parameter, value) pairs:
 * no trimming (the largest `int`), heaps grown 64 MiB at a time, and arrays
 * up to 32 MiB (the most glibc accepts on 64-bit) served from the heap.
 */
const FREED_MEMORY_SETTINGS: ReadonlyArray<readonly [param: number, value: number]> = [
  [M_TRIM_THRESHOLD, 2 ** 31 - 1],
  [M_TOP_PAD, 64 << 20],
  [M_MMAP_THRESHOLD, 32 << 20],
];

type Mallopt = (param: number, value: number) => number;

interface DenoFfi {
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): { symbols: { mallopt: Mallopt } };
}

/** glibc's `mallopt`, or undefined where there is none (another C library, or no FFI permission). */
function bindMallopt(): Mallopt | undefined {
  try {
    if ("Deno" in globalThis) {
      const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
      return deno.dlopen("libc.so.6", { mallopt: { parameters: ["i32", "i32"], result: "i32" } }).symbols.mallopt;
    }
    const koffi = createRequire(import.meta.url)("koffi") as { load(path: string): { func(signature: string): Mallopt } };
    return koffi.load("libc.so.6").func("int mallopt(int param, int value)");
  } catch {
    return undefined;
  }
}

let applied: boolean | undefined;

/**
 * Sets {@link FREED_MEMORY_SETTINGS} for the whole process, once (later
 * calls return the first's result). They hold for every thread, the worker
 * threads started later included. Returns whether glibc took them all:
 * false where there is no glibc (macOS, musl), which changes nothing but
 * the speed.
 */
export function keepFreedMemory(): boolean {
  if (applied !== undefined) return applied;
  const mallopt = bindMallopt();
  applied = mallopt !== undefined && FREED_MEMORY_SETTINGS.every(([param, value]) => mallopt(param, value) === 1);
  return applied;
}
