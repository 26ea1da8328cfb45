/**
 * Serving a slot's requests one at a time, each after a turn of the event
 * loop (the building thread's slot, two: `LocalSlot`), with some kinds ahead
 * of the rest: what a pool worker thread (`serveRequests`) and the building
 * thread's slot share (docs/DISTRIBUTED.md "How a GradOT build uses the cores").
 *
 * The turn lets in what came meanwhile (a worker's next messages, the
 * building thread's replies, file work and own steps), so a request that
 * must go first can: a GradOT build's KFAC sums, which the next block's
 * compression waits for, would otherwise wait behind the compressions posted
 * before them.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/**
 * A function that takes items and passes each to `serve`, one at a time
 * (the next once the last's promise settles), each after `turns` turns of
 * the event loop (default 1): among the items waiting, the oldest that
 * `first` holds for, else the oldest. Items of each kind are served in the
 * order they came. `serve` reports its own failures; a rejection is ignored.
 */
export function serialServer<T>(serve: (item: T) => Promise<void>, first: (item: T) => boolean = () => false, turns = 1): (item: T) => void {
  const waiting: T[] = [];
  let serving = false;
  /** Runs `then` after `left` turns of the event loop. */
  const after = (left: number, then: () => void): void => void setImmediate(left > 1 ? () => after(left - 1, then) : then);
  const serveNext = () => {
    if (serving || waiting.length === 0) return;
    serving = true;
    after(turns, () => {
      const [item] = waiting.splice(Math.max(0, waiting.findIndex(first)), 1);
      serve(item).catch(() => {}).finally(() => {
        serving = false;
        serveNext();
      });
    });
  };
  return (item) => {
    waiting.push(item);
    serveNext();
  };
}
