/**
 * Progress output (src/cli/progress.ts): live on a terminal, plain lines
 * (per update, or one every 30 s) to a file or pipe, nothing under --quiet,
 * OFFTUNE_QUIET=1 or CI.
 */
import { describe, expect, it } from "vitest";
import { createProgress, PLAIN_INTERVAL_S, progressMode, type ProgressOptions } from "../../src/cli/progress.ts";

/** A reporter whose clock the test moves, with what it wrote. */
function recorder(options: ProgressOptions) {
  const out: string[] = [];
  let ms = 0;
  const progress = createProgress("job", false, { ...options, write: (t) => out.push(t), now: () => ms });
  return { out, progress, advance: (s: number) => (ms += s * 1000) };
}

describe("progressMode", () => {
  it("is live on a terminal, lines elsewhere, off when quiet, in a child of a composed verb or in CI", () => {
    expect(progressMode(false, {}, true)).toBe("live");
    expect(progressMode(false, {}, false)).toBe("lines");
    expect(progressMode(true, {}, true)).toBe("off");
    expect(progressMode(false, { OFFTUNE_QUIET: "1" }, false)).toBe("off");
    expect(progressMode(false, { CI: "true" }, true)).toBe("off");
  });
});

describe("createProgress", () => {
  it("writes plain lines to a file: the first update, then one per 30 s, and the last", () => {
    const { out, progress, advance } = recorder({ mode: "lines" });
    for (let done = 1; done <= 100; done++) {
      progress.update({ done, total: 100, unit: "steps", detail: `loss ${(1 / done).toFixed(2)}` });
      advance(1);
    }
    progress.finish("100 steps");
    // Updates at t = 0, 30, 60, 90 s, then the last (done = total) at 99 s, then finish.
    expect(out).toHaveLength(6);
    expect(out.every((line) => line.endsWith("\n") && !line.includes("\r"))).toBe(true);
    expect(out[0]).toBe("job 1/100 steps | loss 1.00 | 0s elapsed, ETA ?\n");
    expect(out[1]).toMatch(/^job 31\/100 steps \| loss 0\.03 \| 30s elapsed, ETA 1m07s\n$/);
    expect(out[4]).toMatch(/^job 100\/100 steps/);
    expect(out[5]).toBe("job 100 steps in 1m40s\n");
    expect(PLAIN_INTERVAL_S).toBe(30);
  });

  it("writes a line for every update of a coarse-step reporter", () => {
    const { out, progress, advance } = recorder({ mode: "lines", every: "update" });
    for (let done = 0; done < 3; done++) {
      progress.update({ done, total: 3, detail: `start step ${done + 1}` });
      advance(0.5);
    }
    expect(out.map((l) => l.split(" | ")[1])).toEqual(["start step 1", "start step 2", "start step 3"]);
  });

  it("redraws one line in place on a terminal and writes nothing when off", () => {
    const live = recorder({ mode: "live" });
    live.progress.update({ done: 1, total: 2 });
    live.advance(1);
    live.progress.update({ done: 2, total: 2, tokens: 500 });
    expect(live.out).toEqual(["\r\x1b[Kjob 1/2 | ETA ?", "\r\x1b[Kjob 2/2 | 500 tok/s | ETA 0s"]);
    // Within the first second no rate or ETA is shown: one batch over a few milliseconds is no rate.
    const early = recorder({ mode: "lines", every: "update" });
    early.advance(0.002);
    early.progress.update({ done: 1, total: 100, tokens: 4096 });
    early.advance(1);
    early.progress.update({ done: 2, total: 100, tokens: 8192 });
    expect(early.out).toEqual(["job 1/100 | 0s elapsed, ETA ?\n", "job 2/100 | 8176 tok/s | 1s elapsed, ETA 49s\n"]);
    const off = recorder({ mode: "off" });
    off.progress.update({ done: 1, total: 1 });
    off.progress.finish();
    expect(off.out).toEqual([]);
  });
});
