/**
 * How the wasm backend's heap grows (docs/DISTRIBUTED.md "Where 2 slots
 * wait"): by doubling instead of by a fifth, and on transparent huge pages.
 *
 * Doubling: tfjs-backend-wasm's Emscripten glue grows its memory to 1.2×
 * what an allocation needs, so a heap that ends at 300 MB grows about 14
 * times, and V8 counts every grown memory's whole size as new external
 * memory of the isolate: 1.7 GB of it on a 2-slot GradOT build's building
 * thread, each 64 MB of which starts a full garbage collection. Doubling
 * reaches the same size in a few steps. Pages the heap does not touch take no
 * memory (they are mapped zeros), so the resident size is what the tensors
 * use, as before.
 *
 * Huge pages: every page the heap touches first costs a page fault. Where the
 * kernel gives transparent huge pages on request (Linux's
 * `transparent_hugepage/enabled` set to `madvise`, as on Debian), the heap's
 * memory is advised `MADV_HUGEPAGE` at each growth, so one fault maps 2 MiB
 * instead of 4 KiB. On a 2-slot OPT-125M GradOT build both threads' heaps
 * fault at once, beside the other thread's allocations: three interleaved
 * pairs took 14.28–14.50 s against 14.71–14.88 s, 273 k page faults against
 * 378 k (docs/DISTRIBUTED.md "Huge pages for the wasm heap"). Elsewhere (no glibc,
 * no FFI permission, huge pages off) the advice is not given or does
 * nothing.
 *
 * @module
 */
import { libcMemoryCalls } from "../linalg/libc_ffi.ts";
import { tf } from "./backend.ts";

const PAGE_BYTES = 65536;
/** `madvise` advice (linux/mman.h): back the range with transparent huge pages. */
const MADV_HUGEPAGE = 14;
const tuned = new WeakSet<WebAssembly.Memory>();

/** The wasm backend's memory (the module's exported memory), if the wasm backend is set. */
export function wasmHeapMemory(): WebAssembly.Memory | undefined {
  return (tf.backend() as unknown as { wasm?: { asm?: { memory?: WebAssembly.Memory } } }).wasm?.asm?.memory;
}

/** Advises `memory`'s whole current range `MADV_HUGEPAGE` (a refusal changes only the speed). */
function adviseHugePages(memory: WebAssembly.Memory): void {
  libcMemoryCalls()?.madvise(new Uint8Array(memory.buffer), MADV_HUGEPAGE);
}

/**
 * Makes the wasm backend's memory grow at least to twice its size at each
 * growth (or by what was asked, where twice would pass the memory's maximum)
 * and advises its range onto huge pages, now and after each growth;
 * idempotent. Called by `initBackend` once the wasm backend is set.
 */
export function tuneHeapGrowth(): void {
  const memory = wasmHeapMemory();
  if (!memory || tuned.has(memory)) return;
  tuned.add(memory);
  adviseHugePages(memory);
  const grow = memory.grow.bind(memory);
  const grown = (pages: number): number => {
    const before = grow(pages);
    adviseHugePages(memory);
    return before;
  };
  memory.grow = (delta: number): number => {
    const pages = memory.buffer.byteLength / PAGE_BYTES;
    if (delta >= pages) return grown(delta);
    try {
      return grown(pages);
    } catch {
      return grown(delta); // past the maximum: what was asked
    }
  };
}
