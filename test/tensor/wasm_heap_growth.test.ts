// The wasm heap grows by doubling, on huge pages where the kernel gives them
// on request (src/tensor/wasm_heap_growth.ts): a tensor that does not fit
// makes the heap at least twice as large, the values written before and after
// the growth are intact, and the whole grown heap is advised MADV_HUGEPAGE.
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { wasmHeapMemory } from "../../src/tensor/wasm_heap_growth.ts";

const heapBytes = () => wasmHeapMemory()!.buffer.byteLength;

/** Whether transparent huge pages are given on request here (Linux, THP `madvise` or `always`). */
function hugePagesOnRequest(): boolean {
  try {
    return /\[(madvise|always)\]/.test(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"));
  } catch {
    return false;
  }
}

/** Bytes of this process's mappings advised MADV_HUGEPAGE (`hg` in their VmFlags), by /proc/self/smaps. */
function advisedBytes(): number {
  let bytes = 0;
  let size = 0;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) size = Number(BigInt(`0x${range[2]}`) - BigInt(`0x${range[1]}`));
    else if (line.startsWith("VmFlags:") && line.split(/\s+/).includes("hg")) bytes += size;
  }
  return bytes;
}

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("tuneHeapGrowth, as initBackend installs it", () => {
  it("grows the heap to at least twice its size when a tensor does not fit, keeping every value", () => {
    const before = heapBytes();
    const small = tf.tensor1d([1, 2, 3]);
    const large = tf.fill([Math.ceil(before / 8)], 5); // half the heap's bytes: at most one of them fits unless it grows
    const larger = tf.fill([Math.ceil(before / 8)], 6);
    const after = heapBytes();
    expect(after).toBeGreaterThanOrEqual(2 * before);
    expect(after).toBeLessThan(4 * before); // doubled once or twice, not grown by all it was asked to every time
    expect(Array.from(small.dataSync())).toEqual([1, 2, 3]);
    expect(large.dataSync().every((v) => v === 5)).toBe(true);
    expect(larger.dataSync().every((v) => v === 6)).toBe(true);
    tf.dispose([small, large, larger]);
  });

  it.runIf(process.platform === "linux" && hugePagesOnRequest())("advises the whole grown heap onto huge pages", () => {
    const grown = tf.fill([heapBytes() / 4], 1); // as many values as the heap has bytes: it grows
    const memory = wasmHeapMemory()!;
    // The heap's mapping (and only mappings this process advised) carries the advice, all of it:
    // at least as many advised bytes as the heap has, the grown part included.
    expect(advisedBytes()).toBeGreaterThanOrEqual(memory.buffer.byteLength);
    tf.dispose(grown);
  });
});
