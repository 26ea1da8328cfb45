// The scratch pool (src/linalg/scratch_arrays.ts): arrays it handed out come
// back and are handed out again to work of the same length; nothing else
// enters it, arrays sent to another thread stay there, and it never holds
// more than its limit; past it, arrays go to another thread as spare.
import { describe, expect, test } from "vitest";
import {
  adoptScratch,
  adoptSpareScratch,
  collectSpareScratch,
  giveScratch,
  handOverScratch,
  SCRATCH_POOL_BYTES,
  scratchBytes,
  SPARE_SCRATCH_BYTES,
  takeScratch,
  takeSpareScratch,
  takeZeroedScratch,
} from "../../src/linalg/scratch_arrays.ts";

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

  test("arrays sent to another thread are shared and handed over; arrays sent back are adopted once", async () => {
    const sent = takeScratch(2222);
    sent.fill(3);
    expect(sent.buffer).toBeInstanceOf(SharedArrayBuffer);
    // A worker's round trip: the array is shared there and back (structured clone, no transfer).
    handOverScratch({ request: [sent] });
    const back = await new Promise<Float32Array>((resolve) => {
      const { port1, port2 } = new MessageChannel();
      port2.onmessage = (e) => {
        resolve(e.data as Float32Array);
        port1.close();
        port2.close();
      };
      port1.postMessage(sent);
    });
    expect(back).not.toBe(sent);
    expect(back[0]).toBe(3); // the same memory
    expect(sent.length).toBe(2222); // still readable here, but handed over: giving it back keeps nothing
    const before = scratchBytes();
    giveScratch(sent);
    expect(scratchBytes()).toBe(before);
    const emptied = new Float32Array(2222);
    structuredClone(emptied, { transfer: [emptied.buffer] });
    adoptScratch(back, back, new Float32Array(4444).subarray(0, 2222), emptied);
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

  test("handing over reaches arrays anywhere in a message", () => {
    const [a, b, c] = [takeScratch(555), takeScratch(555), takeScratch(555)];
    const message: Record<string, unknown> = { kind: "kfac", linears: [{ x: { data: a } }, { gamma: { data: b.subarray(5, 9) } }] };
    message.self = message; // structured clones may hold cycles
    handOverScratch(message);
    const before = scratchBytes();
    giveScratch(a, b, c);
    expect(scratchBytes() - before).toBe(c.byteLength); // only the array the message did not hold
    expect(takeScratch(555)).toBe(c);
  });

  test("it keeps at most its limit of idle arrays", () => {
    const length = 2 ** 22; // 16 MiB each
    const arrays = Array.from({ length: Math.ceil(SCRATCH_POOL_BYTES / (4 * length)) + 3 }, () => takeScratch(length));
    giveScratch(...arrays);
    expect(scratchBytes()).toBeLessThanOrEqual(SCRATCH_POOL_BYTES);
    expect(scratchBytes()).toBeGreaterThan(SCRATCH_POOL_BYTES - 4 * length);
    for (const _ of arrays) takeScratch(length); // empty the pool again
  });

  test("past its limit, arrays given back are spare for another thread, which takes them in once, even its own sent earlier", () => {
    expect(takeSpareScratch()).toEqual([]); // a thread of no worker pool drops what passes the limit (the test above)
    collectSpareScratch(); // as a worker pool's thread
    const length = 2 ** 22; // 16 MiB each
    const fill = Array.from({ length: Math.floor((SCRATCH_POOL_BYTES - scratchBytes()) / (4 * length)) }, () => takeScratch(length)); // the pool's room
    const past = Array.from({ length: SPARE_SCRATCH_BYTES / (4 * length) + 2 }, () => takeScratch(length));
    giveScratch(...fill, ...past);
    const spare = takeSpareScratch();
    expect(spare.length * 4 * length).toBe(SPARE_SCRATCH_BYTES); // the spare's limit, not every array past the pool's
    expect(spare.every((a) => past.includes(a))).toBe(true);
    expect(takeSpareScratch()).toEqual([]); // taken once
    for (const _ of fill) takeScratch(length); // room again
    // Taken, they are handed over (a message carries them to another thread): this pool does not take them back.
    adoptScratch(spare[0]);
    expect(spare).not.toContain(takeScratch(length));
    // Back as that thread's spare, they are taken in where there is room.
    adoptSpareScratch(spare);
    expect(takeScratch(length)).toBe(spare.at(-1));
    // Adopted spare past the limit is dropped, not spared again (no arrays going back and forth).
    const full = Array.from({ length: Math.ceil(SCRATCH_POOL_BYTES / (4 * length)) + 1 }, () => takeScratch(length));
    giveScratch(...full.slice(0, -1));
    takeSpareScratch();
    adoptSpareScratch([full.at(-1)!]);
    expect(takeSpareScratch()).toEqual([]);
    for (const _ of full) takeScratch(length); // empty the pool again
  });
});
