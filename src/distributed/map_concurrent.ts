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
 * order; resolves with the results in item order. The first rejection rejects
 * the whole call (jobs already running are left to finish).
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
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, lane));
  return results;
}
