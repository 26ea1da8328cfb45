/**
 * `LocalSlot`: a calibration pool's slot in the building thread serves its
 * requests one at a time, in order (but those it is told to serve first),
 * each after two turns of the event loop (docs/DISTRIBUTED.md "How a GradOT
 * build uses the cores").
 */
import { describe, expect, test } from "vitest";
import { LocalSlot } from "../../src/distributed/local_slot.ts";
import { claimHolder, newClaimCell, takeClaim } from "../../src/distributed/claim.ts";

describe("LocalSlot", () => {
  test("serves requests one at a time in the order sent", async () => {
    const log: string[] = [];
    const slot = new LocalSlot<number, number>(async (n) => {
      log.push(`start ${n}`);
      await new Promise((r) => setTimeout(r, 5 - n)); // later requests would finish first if run together
      log.push(`end ${n}`);
      return { value: n * n };
    });
    const replies = [1, 2, 3].map((n) => slot.call(n));
    expect(await Promise.all(replies)).toEqual([1, 4, 9]);
    expect(log).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
  });

  test("an event that came before a request is handled before it", async () => {
    const log: string[] = [];
    const slot = new LocalSlot<string, void>((name) => {
      log.push(name);
      return { value: undefined };
    });
    setImmediate(() => log.push("event"));
    await slot.call("request");
    expect(log).toEqual(["event", "request"]);
  });

  test("a step of the calling thread that yields one turn after a reply resumes before the next request", async () => {
    // A GradOT build's backward: the last chunk of a block answers, the build
    // goes through a few promises, yields a turn at the block boundary, then
    // posts the next block's chunks; this slot's next request waits for it.
    const log: string[] = [];
    const slot = new LocalSlot<string, void>((name) => {
      log.push(name);
      return { value: undefined };
    });
    const step = slot.call("chunk").then(async () => {
      for (let hop = 0; hop < 4; hop++) await Promise.resolve(); // the build's promise chain
      await new Promise((r) => setImmediate(r)); // checkpointBoundary
      log.push("next block posted");
    });
    await Promise.all([step, slot.call("compression")]);
    expect(log).toEqual(["chunk", "next block posted", "compression"]);
  });

  test("serves the requests it is told to first ahead of those waiting, each kind in the order sent", async () => {
    const log: string[] = [];
    const slot = new LocalSlot<string, void>(async (name) => {
      log.push(name);
      if (name === "busy") await new Promise((r) => setTimeout(r, 20)); // the others wait behind it
      return { value: undefined };
    }, (name) => name.startsWith("first"));
    const busy = slot.call("busy");
    await new Promise((r) => setTimeout(r, 5)); // it has started
    await Promise.all([busy, ...["a", "first 1", "b", "first 2"].map((name) => slot.call(name))]);
    expect(log).toEqual(["busy", "first 1", "first 2", "a", "b"]);
  });

  test("a failed request rejects its own call only", async () => {
    const slot = new LocalSlot<number, number>((n) => {
      if (n === 2) throw new Error("two");
      return { value: n };
    });
    const replies = [1, 2, 3].map((n) => slot.call(n));
    await expect(replies[1]).rejects.toThrow("two");
    expect(await replies[0]).toBe(1);
    expect(await replies[2]).toBe(3);
  });

  test("serves an offered request only when it takes the claim; one another slot took resolves undefined, unserved", async () => {
    const served: number[] = [];
    const slot = new LocalSlot<number, number>((n) => {
      served.push(n);
      return { value: n + 1 };
    });
    const taken = newClaimCell();
    expect(takeClaim({ cell: taken, slot: 0 })).toBe(true);
    const free = newClaimCell();
    const replies = [slot.offer(1, { cell: taken, slot: 1 }), slot.offer(2, { cell: free, slot: 1 }), slot.call(3)];
    expect(await Promise.all(replies)).toEqual([undefined, 3, 4]);
    expect(served).toEqual([2, 3]);
    expect([claimHolder(taken), claimHolder(free)]).toEqual([0, 1]);
  });
});
