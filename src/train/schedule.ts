/**
 * The learning-rate schedule of the pretraining run: linear warmup, then a
 * half-cosine decay to a floor (the GPT-3 / OPT recipe; OPT itself decays
 * linearly, cosine is the nanoGPT default and is what we use).
 *
 * With peak `η`, floor `η_min`, `W` warmup steps and `S` total steps, the rate
 * used for 0-based step `s` is
 *
 *     s < W:        η · (s + 1) / W
 *     W ≤ s < S:    η_min + (η − η_min) · ½ (1 + cos(π (s − W) / (S − W)))
 *     s ≥ S:        η_min
 *
 * so the first step already moves (η/W), step `W` is at the peak, and the
 * last step `S − 1` is one decay step above the floor.
 *
 * @module
 */

/** The parameters of {@link learningRate}. */
export interface ScheduleOptions {
  /** Peak learning rate η, reached at the end of warmup. */
  peak: number;
  /** Floor η_min the cosine decays to (e.g. η/10). */
  floor: number;
  /** Warmup steps W (0 disables warmup). */
  warmup: number;
  /** Total steps S of the run; the cosine spans steps W..S. */
  total: number;
}

/** Checks a schedule once, so a bad flag fails before training starts. */
export function validateSchedule(o: ScheduleOptions): void {
  if (!(o.peak > 0) || !Number.isFinite(o.peak)) throw new Error(`Learning rate must be positive, got ${o.peak}`);
  if (!(o.floor >= 0) || o.floor > o.peak) {
    throw new Error(`Learning-rate floor must lie in [0, ${o.peak}], got ${o.floor}`);
  }
  if (!Number.isInteger(o.warmup) || o.warmup < 0) {
    throw new Error(`Warmup must be a non-negative integer, got ${o.warmup}`);
  }
  if (!Number.isInteger(o.total) || o.total <= 0) {
    throw new Error(`Total steps must be a positive integer, got ${o.total}`);
  }
}

/** The learning rate for 0-based step `step` (formula in the module doc). */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (step < o.warmup) return (o.peak * (step + 1)) / o.warmup;
  if (step >= o.total) return o.floor;
  const progress = (step - o.warmup) / (o.total - o.warmup);
  return o.floor + (o.peak - o.floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
