// Per-block seconds and RSS of a build (src/events/block_timings.ts): a block
// is complete at its `write` event, with its stages summed and the RSS sampled.
import { describe, expect, test } from "vitest";
import { type BlockTiming, blockTimings, formatBlockTiming } from "../../src/events/block_timings.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";

describe("blockTimings", () => {
  test("sums each block's stages, closes it at its write with RSS samples, and passes every event on", () => {
    const passed: StageEvent[] = [];
    const finished: BlockTiming[] = [];
    const sink = blockTimings({ next: (e) => void passed.push(e) }, (t) => void finished.push(t));
    const events: StageEvent[] = [
      { stage: "forward", block: 1, seconds: 1 },
      { stage: "forward", block: 0, seconds: 2 },
      { stage: "head", seconds: 5 },
      { stage: "backward", block: 1, seconds: 3 },
      { stage: "kfac", block: 1, seconds: 0.25 },
      { stage: "kfac", block: 1, seconds: 0.5 },
      { stage: "backward", block: 1, seconds: 0, done: 1, total: 2 },
      { stage: "write", block: 1, seconds: 0.125 },
      { stage: "write", block: 0, seconds: 1 },
    ];
    for (const e of events) sink.next(e);
    expect(passed).toEqual(events);
    expect(sink.blocks.map((b) => [b.block, b.stages])).toEqual([
      [1, { forward: 1, backward: 3, kfac: 0.75, write: 0.125 }],
      [0, { forward: 2, write: 1 }],
    ]);
    expect(finished).toEqual(sink.blocks);
    for (const b of sink.blocks) {
      expect(b.rssBytes).toBeGreaterThan(1 << 20);
      expect(b.peakRssBytes).toBeGreaterThanOrEqual(b.rssBytes);
    }
  });

  test("formats a block as one line of seconds per stage and MiB", () => {
    const line = formatBlockTiming({ block: 7, stages: { read: 1.234, svd: 60 }, rssBytes: 2048 * 2 ** 20, peakRssBytes: 3000.4 * 2 ** 20 });
    expect(line).toBe("block 7: read 1.23 s, svd 60.00 s; RSS 2048 MiB, peak 3000 MiB");
  });
});
