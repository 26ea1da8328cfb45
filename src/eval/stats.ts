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
 * - A mean of paired differences (two report rows, or a row and the full
 *   model) gets a Student t interval, `d̄ ± t(0.975, n − 1)·s/√n`
 *   (docs/REPORT.md "Comparisons").
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

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14). */
function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const y = x - 1;
  let sum = c[0];
  for (let i = 1; i < 9; i++) sum += c[i] / (y + i);
  const t = y + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  d = 1 / (Math.abs(d) < tiny ? tiny : d);
  let h = d;
  for (let m = 1; m <= 300; m++) {
    for (const numerator of [
      (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)),
      -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1)),
    ]) {
      d = 1 + numerator * d;
      d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + numerator / c;
      if (Math.abs(c) < tiny) c = tiny;
      h *= d * c;
    }
    if (Math.abs(d * c - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), for x in [0, 1]. */
function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (front * betaFraction(a, b, x)) / a : 1 - (front * betaFraction(b, a, 1 - x)) / b;
}

/** P(T ≤ t) for Student's t with `df` degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/**
 * The `p` quantile of Student's t with `df` degrees of freedom (e.g. p =
 * 0.975, df = 2: 4.3027), by bisection on {@link studentTCdf}: the factor of
 * a t interval over few pairs (docs/REPORT.md "Comparisons").
 *
 * @throws Error for p outside (0, 1) or df not a positive number
 */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`A t quantile needs p in (0, 1), got ${p}`);
  if (!(df > 0) || !Number.isFinite(df)) throw new Error(`A t quantile needs df > 0, got ${df}`);
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < p) [lo, hi] = [hi, hi * 2];
  for (let i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** A mean difference with its interval; `lo`, `hi` null when fewer than two differences give no spread. */
export interface DifferenceInterval {
  /** Mean of the differences. */
  mean: number;
  /** Lower end of the interval, or null. */
  lo: number | null;
  /** Upper end of the interval, or null. */
  hi: number | null;
  /** How many paired differences. */
  n: number;
}

/**
 * The paired t interval of a mean difference: `d̄ ± t(1 − α/2, n − 1) · s / √n`
 * over paired differences `d` (s their sample standard deviation, n − 1
 * denominator), at `confidence` (default 0.95). How the report compares two
 * rows, or a row with the full model (docs/REPORT.md "Comparisons").
 *
 * @throws Error for no differences, a non-finite one, or a confidence outside (0, 1)
 */
export function pairedTInterval(differences: readonly number[], confidence = 0.95): DifferenceInterval {
  const n = differences.length;
  if (n === 0) throw new Error("A paired interval needs at least one difference");
  if (!differences.every(Number.isFinite)) throw new Error(`A paired interval needs finite differences, got ${differences.join(", ")}`);
  if (!(confidence > 0 && confidence < 1)) throw new Error(`A confidence must lie in (0, 1), got ${confidence}`);
  const { mean, std: sd } = meanStd(differences);
  if (sd === null) return { mean, lo: null, hi: null, n };
  const half = studentTQuantile(1 - (1 - confidence) / 2, n - 1) * sd / Math.sqrt(n);
  return { mean, lo: mean - half, hi: mean + half, n };
}

/**
 * Mean and sample standard deviation (n − 1; null for fewer than two values):
 * the seeds' spread of the report (docs/REPORT.md "Averaging") and the spread
 * of a paired interval.
 *
 * @throws Error for an empty list
 */
export function meanStd(values: readonly number[]): { mean: number; std: number | null } {
  if (values.length === 0) throw new Error("Cannot average an empty list");
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (values.length < 2) return { mean, std: null };
  const ss = values.reduce((a, v) => a + (v - mean) ** 2, 0);
  return { mean, std: Math.sqrt(ss / (values.length - 1)) };
}
