/**
 * Keeping freed memory in the process for its next allocations, instead of
 * handing it back to the kernel (glibc's `mallopt`, through the FFI both
 * runtimes have: src/linalg/libc_ffi.ts).
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
import { libcMemoryCalls } from "../linalg/libc_ffi.ts";

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
  const libc = libcMemoryCalls();
  applied = libc !== undefined && FREED_MEMORY_SETTINGS.every(([param, value]) => libc.mallopt(param, value) === 1);
  return applied;
}
