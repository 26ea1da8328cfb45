/**
 * A bounded pool of async jobs on one thread: for pipelines that fan work out
 * to child processes (each verb of `offtune experiment` is one), where the
 * parallelism lives in the children and this process only keeps `jobs` of
 * them running.
 *
 * @module
 */

/**
 * Runs `work` on every item, at most `jobs` at a time, starting items in
 * order; resolves with the results in item order. After the first rejection
 * no further item starts; the call waits for the jobs already running to
 * settle and then rejects with that first error. So nothing the jobs started
 * (an experiment's child processes) still runs, or still writes into its
 * output directory, once the call has returned.
 *
 * @example
 * ```ts
 * const sizes = await mapConcurrent(files, 4, (f) => stat(f).then((s) => s.size));
 * ```
 */
export async function mapConcurrent<T, R>(items: readonly T[], jobs: number, work: (item: T) => Promise<R>): Promise<R[]> {
  if (!Number.isInteger(jobs) || jobs < 1) throw new RangeError(`mapConcurrent: jobs must be a positive integer, got ${jobs}`);
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        results[i] = await work(items[i]);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, lane));
  if (failure !== undefined) throw failure.error;
  return results;
}
