/**
 * The wasm backend's heap grown by doubling instead of by a fifth
 * (docs/DISTRIBUTED.md "Where 2 slots wait"). tfjs-backend-wasm's
 * Emscripten glue grows its memory to 1.2× what an allocation needs, so a
 * heap that ends at 300 MB grows about 14 times, and V8 counts every grown
 * memory's whole size as new external memory of the isolate: 1.7 GB of it
 * on a 2-slot GradOT build's building thread, each 64 MB of which starts a
 * full garbage collection. Doubling reaches the same size in a few steps.
 * Pages the heap does not touch take no memory (they are mapped zeros), so
 * the resident size is what the tensors use, as before.
 *
 * @module
 */
import { tf } from "./backend.ts";

const PAGE_BYTES = 65536;
const doubled = new WeakSet<WebAssembly.Memory>();

/**
 * Makes the wasm backend's memory grow at least to twice its size at each
 * growth (or by what was asked, where twice would pass the memory's maximum);
 * idempotent. Called by `initBackend` once the wasm backend is set.
 */
export function doubleHeapGrowth(): void {
  const memory = (tf.backend() as unknown as { wasm?: { asm?: { memory?: WebAssembly.Memory } } }).wasm?.asm?.memory; // the module's exported memory
  if (!memory || doubled.has(memory)) return;
  doubled.add(memory);
  const grow = memory.grow.bind(memory);
  memory.grow = (delta: number): number => {
    const pages = memory.buffer.byteLength / PAGE_BYTES;
    if (delta >= pages) return grow(delta);
    try {
      return grow(pages);
    } catch {
      return grow(delta); // past the maximum: what was asked
    }
  };
}
