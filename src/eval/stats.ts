/**
 * Uncertainty of evaluation accuracies (docs/METHOD.md §5): whether a score is
 * above chance, and how far two rows of the §1 table may be compared.
 *
 * - `stderr` is what lm-eval-harness reports for a mean metric: the sample
 *   standard deviation (n − 1 denominator) over √n; for 0/1 outcomes that is
 *   `√(p(1 − p)/(n − 1))`.
 * - The 95% interval of one accuracy is the **Wilson score interval**: unlike
 *   `p ± 1.96·stderr` it stays inside [0, 1] and keeps its coverage near 0
 *   and 1 and for a few hundred items, where small models' scores sit.
 * - The interval of an average over tasks is normal, `mean ± 1.96·se` with
 *   `se = √(Σ se_i²) / K` (tasks independent, each weighted equally).
 * - Chance is the mean over items of `1/k` for `k` choices; a score is
 *   "above chance" when its interval's lower end exceeds it.
 *
 * @module
 */

/** Two-sided 95% normal quantile. */
export const Z95 = 1.959963984540054;

/** An accuracy with its uncertainty. */
export interface AccuracyStats {
  /** Mean of the 0/1 outcomes. */
  mean: number;
  /** Sample standard deviation / √n (lm-eval's `_stderr`); NaN for n < 2. */
  stderr: number;
  /** 95% interval [lo, hi]. */
  ci: [number, number];
}

/**
 * Wilson score interval for `successes` of `n` at normal quantile `z`.
 *
 * @throws Error for n < 1 or successes outside [0, n]
 */
export function wilsonInterval(successes: number, n: number, z = Z95): [number, number] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`A Wilson interval needs n ≥ 1 trials, got ${n}`);
  if (!(successes >= 0 && successes <= n)) throw new Error(`Successes ${successes} lie outside [0, ${n}]`);
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/**
 * Mean, lm-eval stderr and Wilson 95% interval of 0/1 outcomes.
 *
 * @throws Error for no outcomes or an outcome other than 0 or 1
 */
export function accuracyStats(outcomes: ArrayLike<number>): AccuracyStats {
  const n = outcomes.length;
  if (n === 0) throw new Error("Accuracy of no items is undefined");
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const x = outcomes[i];
    if (x !== 0 && x !== 1) throw new Error(`Outcome ${i} is ${x}, expected 0 or 1`);
    hits += x;
  }
  const mean = hits / n;
  const stderr = n < 2 ? NaN : Math.sqrt((mean * (1 - mean)) / (n - 1));
  return { mean, stderr, ci: wilsonInterval(hits, n) };
}

/**
 * Chance accuracy of uniform guessing: mean over items of `1/k`.
 *
 * @throws Error for no items or an item with fewer than 2 choices
 */
export function chanceLevel(choiceCounts: ArrayLike<number>): number {
  if (choiceCounts.length === 0) throw new Error("Chance level of no items is undefined");
  let sum = 0;
  for (let i = 0; i < choiceCounts.length; i++) {
    const k = choiceCounts[i];
    if (!Number.isInteger(k) || k < 2) throw new Error(`Item ${i} has ${k} choices; multiple choice needs at least 2`);
    sum += 1 / k;
  }
  return sum / choiceCounts.length;
}

/** Whether an accuracy's interval lies wholly above `chance`. */
export function aboveChance(stats: AccuracyStats, chance: number): boolean {
  return stats.ci[0] > chance;
}

/**
 * Equal-weight average of per-task accuracies with a normal 95% interval
 * (`se = √(Σ se_i²)/K`, clipped to [0, 1]). Tasks with an undefined stderr
 * (n < 2) make the average's stderr NaN and its interval [NaN, NaN].
 *
 * @throws Error for no tasks
 */
export function averageStats(tasks: readonly AccuracyStats[]): AccuracyStats {
  const k = tasks.length;
  if (k === 0) throw new Error("Average of no tasks is undefined");
  const mean = tasks.reduce((s, t) => s + t.mean, 0) / k;
  const stderr = Math.sqrt(tasks.reduce((s, t) => s + t.stderr * t.stderr, 0)) / k;
  return { mean, stderr, ci: [Math.max(0, mean - Z95 * stderr), Math.min(1, mean + Z95 * stderr)] };
}
