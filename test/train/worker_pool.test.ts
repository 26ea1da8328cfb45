import { describe, expect, it } from "vitest";
import { WorkerPool } from "../../src/distributed/worker_pool.ts";
import { claimHolder, newClaimCell, takeClaim } from "../../src/distributed/claim.ts";

type Req = { values?: Float32Array; fail?: string; delayMs?: number; first?: boolean };
type Res = { sum: number; thread: number; blas?: string; echo: Float32Array; served: number };
const entry = new URL("./echo_worker.ts", import.meta.url);

describe("WorkerPool", () => {
  it("moves Float32Arrays both ways intact and addresses workers by index", async () => {
    const pool = await WorkerPool.start<Req, Res>(entry, { size: 2 });
    try {
      const values = new Float32Array([1.5, -2.25, 3e-8, 65504.5]);
      const expected = Array.from(values, (v) => Math.fround(v * 2));
      const reply0 = await pool.call(0, { values }, [values.buffer]);
      expect(values.length).toBe(0); // transferred, not copied
      expect(reply0.echo).toBeInstanceOf(Float32Array);
      expect(Array.from(reply0.echo)).toEqual(expected);
      expect(reply0.sum).toBeCloseTo(1.5 - 2.25 + 3e-8 + 65504.5, 6);
      expect(reply0.blas).toBe("1");
      const reply1 = await pool.call(1, {});
      expect(reply1.thread).not.toBe(reply0.thread);
    } finally {
      await pool.close();
    }
  });

  it("queues run() requests onto idle workers and spreads them", async () => {
    const pool = await WorkerPool.start<Req, Res>(entry, { size: 2 });
    try {
      const replies = await Promise.all(
        Array.from({ length: 6 }, (_, i) => pool.run({ values: new Float32Array([i]), delayMs: 30 })),
      );
      expect(replies.map((r) => r.sum)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(new Set(replies.map((r) => r.thread)).size).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it("rejects with the worker's error message and keeps serving", async () => {
    const pool = await WorkerPool.start<Req, Res>(entry, { size: 1 });
    try {
      await expect(pool.call(0, { fail: "bad request 42" })).rejects.toThrow("Worker 0 failed: bad request 42");
      expect((await pool.call(0, { values: new Float32Array([2]) })).sum).toBe(2);
    } finally {
      await pool.close();
    }
    await expect(pool.call(0, {})).rejects.toThrow("closed");
  });

  it("serves the requests its worker puts first ahead of those waiting, each kind in the order sent", async () => {
    const pool = await WorkerPool.start<Req, Res>(entry, { size: 1 });
    try {
      const busy = pool.call(0, { delayMs: 100 }); // the others wait behind it
      await new Promise((r) => setTimeout(r, 30)); // it has started
      const rest = [{}, {}, { first: true }, {}, { first: true }].map((r) => pool.call(0, r));
      const order = (await Promise.all([busy, ...rest])).map((r) => r.served);
      expect(order).toEqual([1, 4, 5, 2, 6, 3]);
    } finally {
      await pool.close();
    }
  });

  it("serves an offered request only when it takes the claim, and passes it over when another slot took it", async () => {
    const pool = await WorkerPool.start<Req, Res>(entry, { size: 1 });
    try {
      const free = newClaimCell();
      expect((await pool.offer(0, { values: new Float32Array([3]) }, { cell: free, slot: 0 }))?.sum).toBe(3);
      expect(claimHolder(free)).toBe(0);
      const taken = newClaimCell();
      expect(takeClaim({ cell: taken, slot: 1 })).toBe(true);
      expect(await pool.offer(0, { values: new Float32Array([5]) }, { cell: taken, slot: 0 })).toBeUndefined();
      expect(claimHolder(taken)).toBe(1);
      expect((await pool.call(0, {})).served).toBe(2); // the passed-over request never reached the handler
    } finally {
      await pool.close();
    }
  });

  it("fails to start with the entry named when the module does not load", async () => {
    const missing = new URL("./no_such_worker.ts", import.meta.url);
    await expect(WorkerPool.start(missing, { size: 1 })).rejects.toThrow(/no_such_worker\.ts/);
  });
});
