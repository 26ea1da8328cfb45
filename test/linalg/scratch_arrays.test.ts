// The scratch pool (src/linalg/scratch_arrays.ts): arrays it handed out come
// back and are handed out again to work of the same length; nothing else
// enters it, and it never holds more than its limit.
import { describe, expect, test } from "vitest";
import { adoptScratch, giveScratch, SCRATCH_POOL_BYTES, scratchBytes, takeScratch, takeZeroedScratch } from "../../src/linalg/scratch_arrays.ts";

describe("scratch arrays", () => {
  test("an array given back is handed out again for the same length only", () => {
    const a = takeScratch(1000);
    a.fill(7);
    giveScratch(a);
    expect(takeScratch(999)).not.toBe(a);
    const again = takeScratch(1000);
    expect(again).toBe(a);
    expect(again[0]).toBe(7); // contents are the last user's
    giveScratch(again);
    const zeroed = takeZeroedScratch(1000);
    expect(zeroed).toBe(a);
    expect(zeroed.every((v) => v === 0)).toBe(true);
    giveScratch(zeroed);
  });

  test("arrays it did not hand out, and second gives, never enter the pool", () => {
    const own = new Float32Array(1234);
    giveScratch(own);
    expect(takeScratch(1234)).not.toBe(own);
    const a = takeScratch(4321);
    const before = scratchBytes();
    giveScratch(a, a);
    expect(scratchBytes() - before).toBe(a.byteLength);
    const first = takeScratch(4321);
    expect(first).toBe(a);
    expect(takeScratch(4321)).not.toBe(a); // one give, one reuse
  });

  test("arrays moved back from another thread are adopted once; views and emptied arrays are not", async () => {
    const sent = takeScratch(2222);
    sent.fill(3);
    // A worker's round trip: the array is moved there and back (structured clone with transfer).
    const back = await new Promise<Float32Array>((resolve) => {
      const { port1, port2 } = new MessageChannel();
      port2.onmessage = (e) => {
        resolve(e.data as Float32Array);
        port1.close();
        port2.close();
      };
      port1.postMessage(sent, [sent.buffer]);
    });
    expect(sent.length).toBe(0); // moved away: giving it back now keeps nothing
    const before = scratchBytes();
    giveScratch(sent);
    adoptScratch(back, back, new Float32Array(4444).subarray(0, 2222));
    expect(scratchBytes() - before).toBe(back.byteLength);
    expect(takeScratch(2222)).toBe(back);
    expect(takeScratch(2222)).not.toBe(back);
    // This thread's own slot hands back the very arrays it was lent: adopted, not twice.
    const lent = takeScratch(3333);
    adoptScratch(lent);
    giveScratch(lent);
    expect(takeScratch(3333)).toBe(lent);
    expect(takeScratch(3333)).not.toBe(lent);
  });

  test("it keeps at most its limit of idle arrays", () => {
    const length = 2 ** 22; // 16 MiB each
    const arrays = Array.from({ length: Math.ceil(SCRATCH_POOL_BYTES / (4 * length)) + 3 }, () => takeScratch(length));
    giveScratch(...arrays);
    expect(scratchBytes()).toBeLessThanOrEqual(SCRATCH_POOL_BYTES);
    expect(scratchBytes()).toBeGreaterThan(SCRATCH_POOL_BYTES - 4 * length);
    for (const _ of arrays) takeScratch(length); // empty the pool again
  });
});
