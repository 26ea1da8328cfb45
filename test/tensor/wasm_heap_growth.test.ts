// The wasm heap grows by doubling (src/tensor/wasm_heap_growth.ts): a tensor
// that does not fit makes the heap at least twice as large, and the values
// written before and after the growth are intact.
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";

const heapBytes = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("doubleHeapGrowth, as initBackend installs it", () => {
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
});
