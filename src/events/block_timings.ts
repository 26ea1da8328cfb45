/**
 * Per-block stage seconds and resident memory of an emulator build
 * (docs/GRADOT.md "7B shape"): a stage-event sink that sums each block's
 * seconds per stage and, when the block's shard is written (its `write`
 * event, the last work on a block), samples the process's RSS now and its
 * peak so far. Samples taken after an early and a late block show whether
 * memory grows with depth; `build-emulator --timings` records them and
 * `offtune bench scale` reads them.
 *
 * @module
 */
import process from "node:process";
import { peakRssBytes, type Stage, type StageEvents } from "./stage_events.ts";

/** One block's figures, complete once its shard is written. */
export interface BlockTiming {
  /** The block's index in the model. */
  block: number;
  /** Seconds per stage spent on this block (stages without a block, e.g. `head`, are not here). */
  stages: Partial<Record<Stage, number>>;
  /** The process's resident set size right after the block's shard was written, bytes. */
  rssBytes: number;
  /** The process's peak resident set size up to then, bytes. */
  peakRssBytes: number;
}

/**
 * A sink collecting {@link BlockTiming}s in the order blocks finish (and
 * calling `onBlock` with each), passing every event on to `forward`.
 */
export function blockTimings(
  forward?: StageEvents,
  onBlock?: (timing: BlockTiming) => void,
): StageEvents & { blocks: BlockTiming[] } {
  const open = new Map<number, Partial<Record<Stage, number>>>();
  const blocks: BlockTiming[] = [];
  return {
    blocks,
    next(event) {
      const { block, stage, seconds } = event;
      if (block !== undefined) {
        const stages = open.get(block) ?? {};
        if (seconds > 0) stages[stage] = (stages[stage] ?? 0) + seconds;
        open.set(block, stages);
        if (stage === "write") {
          open.delete(block);
          const timing = { block, stages, rssBytes: process.memoryUsage.rss(), peakRssBytes: peakRssBytes() };
          blocks.push(timing);
          onBlock?.(timing);
        }
      }
      forward?.next(event);
    },
  };
}

/** One line for a finished block: its seconds per stage and the RSS samples, in MiB. */
export function formatBlockTiming(t: BlockTiming): string {
  const stages = Object.entries(t.stages).map(([stage, s]) => `${stage} ${s.toFixed(2)} s`).join(", ");
  return `block ${t.block}: ${stages}; RSS ${(t.rssBytes / 2 ** 20).toFixed(0)} MiB, peak ${(t.peakRssBytes / 2 ** 20).toFixed(0)} MiB`;
}
