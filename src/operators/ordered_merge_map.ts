/**
 * `orderedMergeMap`: `mergeMap` with a concurrency whose results come out in
 * the order of their inputs. The per-block scoring and compression of a
 * GradOT build run side by side on a worker pool, yet the shards are written
 * in block order (docs/DISTRIBUTED.md "All cores of one machine").
 *
 * @module
 */
import { defer, from, map, mergeMap, type ObservableInput, type OperatorFunction } from "rxjs";

/**
 * Projects each value to one result (the first value `project`'s input
 * emits), at most `concurrency` at a time, and emits the results in input
 * order: a result that is ready early waits for those before it.
 *
 * @example
 * ```ts
 * blocks.pipe(orderedMergeMap((b) => pool.compress(b), pool.size))
 * ```
 */
export function orderedMergeMap<T, R>(project: (value: T) => ObservableInput<R>, concurrency: number): OperatorFunction<T, R> {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`orderedMergeMap: concurrency must be a positive integer, got ${concurrency}`);
  }
  return (source) =>
    defer(() => {
      const ready = new Map<number, R>();
      let next = 0;
      return source.pipe(
        mergeMap((value, k) => from(project(value)).pipe(map((result) => ({ k, result }))), concurrency),
        mergeMap(({ k, result }) => {
          ready.set(k, result);
          const out: R[] = [];
          while (ready.has(next)) {
            out.push(ready.get(next)!);
            ready.delete(next++);
          }
          return out;
        }),
      );
    });
}
