import { describe, expect, it } from "vitest";
import { mapConcurrent } from "../src/distributed/map_concurrent.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mapConcurrent", () => {
  it("keeps at most `jobs` running, starts in order and returns results in item order", async () => {
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const out = await mapConcurrent([30, 5, 20, 1, 10, 2, 8], 3, async (ms) => {
      started.push(ms);
      running++;
      peak = Math.max(peak, running);
      await tick(ms);
      running--;
      return ms * 2;
    });
    expect(out).toEqual([60, 10, 40, 2, 20, 4, 16]);
    expect(peak).toBe(3);
    expect(started).toEqual([30, 5, 20, 1, 10, 2, 8]);
  });

  it("handles more jobs than items, no items, and refuses a bad job count", async () => {
    expect(await mapConcurrent([1, 2], 8, async (x) => x + 1)).toEqual([2, 3]);
    expect(await mapConcurrent([], 2, async (x: number) => x)).toEqual([]);
    await expect(mapConcurrent([1], 0, async (x) => x)).rejects.toThrow(/positive integer/);
  });

  it("rejects with the first failure", async () => {
    await expect(mapConcurrent([1, 2, 3], 2, async (x) => {
      if (x === 2) throw new Error("job 2 failed");
      return x;
    })).rejects.toThrow("job 2 failed");
  });

  it("after a failure starts nothing more and rejects only once the running jobs have settled", async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const call = mapConcurrent([0, 1, 2, 3, 4], 2, async (x) => {
      started.push(x);
      if (x === 1) {
        await tick(5);
        throw new Error("job 1 failed");
      }
      if (x === 3) throw new Error("job 3 failed too");
      await tick(x === 0 ? 40 : 1); // job 0 is still running when job 1 fails
      finished.push(x);
      return x;
    });
    await expect(call).rejects.toThrow("job 1 failed"); // the first failure, not a later one
    expect(finished).toContain(0); // the running job finished before the call returned
    expect(started).not.toContain(4); // and no job started after the failure
  });
});
