import { beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { peekValues } from "../../src/tensor/heap_view.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("peekValues", () => {
  it("views a float32 tensor's wasm heap bytes (no copy) holding its values", () => {
    const t = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const view = peekValues(t);
    expect(Array.from(view)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(view.buffer.byteLength).toBeGreaterThan(1 << 20); // the heap, not a 24-byte copy
    const copy = t.dataSync();
    expect(copy.buffer).not.toBe(view.buffer);
    t.dispose();
  });

  it("views a reshaped tensor through its shared buffer, and refuses non-float32 data", () => {
    const t = tf.tensor1d([7, 8, 9, 10]);
    const r = tf.reshape(t, [2, 2]);
    expect(Array.from(peekValues(r))).toEqual([7, 8, 9, 10]);
    const ints = tf.tensor1d([1, 2], "int32");
    expect(() => peekValues(ints)).toThrow("peekValues reads float32 tensors, got int32");
    tf.dispose([t, r, ints]);
  });
});
