/**
 * `SlotPool.post` routes each request to the slot with the least work
 * queued, a request's work being the cost its caller gives (1 by default:
 * the count of pending requests), the calling thread's slot when it has no
 * more queued than every worker (docs/DISTRIBUTED.md "How a GradOT build
 * uses the cores").
 */
import { describe, expect, test } from "vitest";
import { threadId } from "node:worker_threads";
import { SlotPool } from "../../src/distributed/slot_pool.ts";

type Req = { delayMs?: number; fail?: string };
type Res = { thread: number; served?: number };
const entry = new URL("../train/echo_worker.ts", import.meta.url);

/** Runs `use` on a pool of one echo worker (test/train/echo_worker.ts) and this thread, which answers its own thread id; closes it after. */
async function withPool(use: (pool: SlotPool<Req, Res>) => Promise<void>): Promise<void> {
  const pool = await SlotPool.start<Req, Res>(entry, { workers: 1, local: () => ({ value: { thread: threadId } }) });
  try {
    await use(pool);
  } finally {
    await pool.close();
  }
}

/** Where each request went: "w" the worker, "l" this thread. */
const places = (replies: Res[]) => replies.map((r) => (r.thread === threadId ? "l" : "w")).join("");

describe("SlotPool.post", () => {
  test("with no costs, counts pending requests: the calling thread takes every other one", () =>
    withPool(async (pool) => {
      const replies = await Promise.all(Array.from({ length: 6 }, () => pool.post({ delayMs: 20 })));
      expect(places(replies)).toBe("wlwlwl");
    }));

  test("weighs requests by cost: after a costly one on the worker, this thread takes cheap ones until it has as much", () =>
    withPool(async (pool) => {
      const heavy = pool.post({ delayMs: 20 }, [], 5); // this thread has 0 + 5 > 0 queued: the worker
      const light = Array.from({ length: 6 }, () => pool.post({ delayMs: 20 }, [], 1)); // 0..4 + 1 <= 5: here, then the worker
      expect(places([await heavy, ...(await Promise.all(light))])).toBe("wlllllw");
    }));

  test("an idle slot's work is exactly zero again, whatever the costs it served", () =>
    withPool(async (pool) => {
      // Added up and taken back one by one in floating point, these costs would leave 5.6e-17 behind.
      const costs = [0.1, 0.2, 0.7, 0.3];
      await Promise.all(costs.map((cost) => pool.call(pool.size - 1, {}, [], cost))); // all served here
      // With both slots idle, the first of two equal requests goes to the worker and the second ties here.
      const replies = await Promise.all([pool.post({ delayMs: 20 }, [], 0.3), pool.post({ delayMs: 20 }, [], 0.3)]);
      expect(places(replies)).toBe("wl");
    }));

  test("a worker with one request left ties with an idle calling thread on the same cost, whatever it served before", () =>
    withPool(async (pool) => {
      // Summed in floating point, the worker's work would be 0.29999999999999993 after 0.1 and 0.7 are served:
      // less than the calling thread's 0 + 0.3, so the next 0.3 would go to the worker and wait behind the last.
      const served = [pool.call(0, {}, [], 0.1), pool.call(0, {}, [], 0.7)];
      const last = pool.call(0, { delayMs: 200 }, [], 0.3);
      await Promise.all(served);
      const tie = pool.post({}, [], 0.3);
      expect(places([await tie, await last])).toBe("lw");
    }));

  test("rejects a negative or non-finite cost", () =>
    withPool(async (pool) => {
      await expect(pool.post({}, [], -1)).rejects.toThrow(/cost must be a finite number of 0 or more, got -1/);
      await expect(pool.call(0, {}, [], Number.NaN)).rejects.toThrow(/got NaN/);
    }));
});

/** Keeps this thread busy for `ms` without a turn of its event loop, as a build's own synchronous work does. */
function busyFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* no turn */ }
}

describe("SlotPool.offer", () => {
  test("a busy calling thread leaves offered requests to the worker: each is served once", () =>
    withPool(async (pool) => {
      const replies = Array.from({ length: 4 }, () => pool.offer({}));
      busyFor(300); // the worker takes all four meanwhile
      expect(places(await Promise.all(replies))).toBe("wwww");
      expect((await pool.call(0, {})).served).toBe(5); // none served twice
    }));

  test("a busy worker leaves them to the calling thread, and passes them over later", () =>
    withPool(async (pool) => {
      const busy = pool.call(0, { delayMs: 200 });
      await new Promise((r) => setTimeout(r, 30)); // it has started
      const replies = Array.from({ length: 3 }, () => pool.offer({}));
      expect(places(await Promise.all(replies))).toBe("lll");
      await busy;
      expect((await pool.call(0, {})).served).toBe(2); // the delay and this one: the three were passed over
    }));

  test("the slot that took it failing rejects the offer with its error", () =>
    withPool(async (pool) => {
      const reply = pool.offer({ fail: "offered and failed" });
      reply.catch(() => {}); // awaited below
      busyFor(300); // the worker takes it
      await expect(reply).rejects.toThrow("Worker 0 failed: offered and failed");
    }));

  test("an offer another slot took no longer counts as the worker's queued work", () =>
    withPool(async (pool) => {
      const busy = pool.call(0, { delayMs: 300 }, [], 1);
      await new Promise((r) => setTimeout(r, 30));
      expect(places([await pool.offer({}, 5)])).toBe("l"); // queued on the worker behind the delay, passed over there later
      const local = pool.call(pool.size - 1, {}, [], 3); // this thread has 3 queued
      // The worker has 1 queued once the offer taken here stops counting (6 while it did): 3 + 1 > 1, so the worker.
      const next = pool.post({}, [], 1);
      expect(places([await next, await local, await busy])).toBe("wlw");
    }));

  test("rejects a negative cost", () =>
    withPool(async (pool) => {
      await expect(pool.offer({}, -1)).rejects.toThrow(/cost must be a finite number of 0 or more, got -1/);
    }));
});
