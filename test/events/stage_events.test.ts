// One stream of stage events (src/events/stage_events.ts): timings reach the
// per-stage totals (the benchmarks' figures), progress marks reach the CLI's
// progress line (src/cli/progress.ts progressEvents), and both come from the
// same events.
import { Subject } from "rxjs";
import { describe, expect, test } from "vitest";
import { type StageEvent, stageTotals, timeStage, timeStageAsync } from "../../src/events/stage_events.ts";
import { type ProgressReporter, type ProgressUpdate, progressEvents } from "../../src/cli/progress.ts";

/** A reporter that records its updates. */
function recorder(): ProgressReporter & { updates: ProgressUpdate[] } {
  const updates: ProgressUpdate[] = [];
  return { updates, update: (u) => void updates.push(u), finish: () => {} };
}

describe("stage events", () => {
  test("timeStage reports its work's seconds, with the extra fields, and returns the work's value", async () => {
    const seen: StageEvent[] = [];
    const events = { next: (e: StageEvent) => void seen.push(e) };
    expect(timeStage(events, "svd", () => 7, { block: 3 })).toBe(7);
    expect(await timeStageAsync(events, "read", async () => "w", { block: 4 })).toBe("w");
    expect(timeStage(undefined, "svd", () => 8)).toBe(8); // no sink: nothing to report to
    expect(seen.map(({ stage, block }) => ({ stage, block }))).toEqual([{ stage: "svd", block: 3 }, { stage: "read", block: 4 }]);
    for (const e of seen) expect(e.seconds).toBeGreaterThanOrEqual(0);
  });

  test("stageTotals sums seconds per stage and passes every event on", () => {
    const passed: StageEvent[] = [];
    const totals = stageTotals({ next: (e) => void passed.push(e) });
    const events: StageEvent[] = [
      { stage: "forward", block: 0, seconds: 0.5 },
      { stage: "forward", block: 1, seconds: 0.25 },
      { stage: "svd", block: 1, seconds: 2 },
      { stage: "forward", block: 1, done: 2, total: 8, seconds: 0 }, // a progress mark times nothing
    ];
    for (const e of events) totals.next(e);
    expect(Object.fromEntries(totals.totals)).toEqual({ forward: 0.75, svd: 2 });
    expect(passed).toEqual(events);
  });

  test("progressEvents draws the progress marks only, with the tokens of all marks so far", () => {
    const progress = recorder();
    const subject = new Subject<StageEvent>(); // an RxJS Subject is a sink, and fans out
    subject.subscribe(progressEvents(progress));
    subject.next({ stage: "kfac", block: 0, seconds: 0.1, tokens: 999 }); // timing only: not drawn, not counted
    subject.next({ stage: "forward", block: 0, done: 1, total: 4, unit: "steps", seconds: 0, tokens: 64 });
    subject.next({ stage: "loglikelihood", done: 30, total: 40, unit: "requests", seconds: 0.2, tokens: 100, detail: "batch" });
    expect(progress.updates).toEqual([
      { done: 1, total: 4, unit: "steps", detail: "block 1 forward", tokens: 64 },
      { done: 30, total: 40, unit: "requests", detail: "batch", tokens: 164 },
    ]);
  });
});
