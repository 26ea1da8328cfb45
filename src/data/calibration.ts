/**
 * Calibration sets for GradOT (docs/METHOD.md §2: `g` and the KFAC curvature come
 * from one forward + backward over calibration text): N windows of T tokens
 * taken from a token stream at evenly spaced, deterministic offsets, so the
 * same text always gives the same calibration set.
 *
 * @module
 */
import type { CalibrationSet } from "../records/records.ts";

/**
 * `sequences` windows of `length` tokens spread evenly over `tokens`
 * (non-overlapping when the stream is long enough).
 *
 * @param source names the stream in the error raised when it is too short
 */
export function calibrationFromTokens(
  tokens: ArrayLike<number>,
  sequences: number,
  length: number,
  source = "the calibration text",
): CalibrationSet {
  if (!(Number.isInteger(sequences) && sequences >= 1)) {
    throw new RangeError(`Calibration needs at least one sequence, got ${sequences}`);
  }
  if (!(Number.isInteger(length) && length >= 2)) {
    throw new RangeError(`Calibration sequences need at least 2 tokens, got ${length}`);
  }
  if (tokens.length < sequences * length) {
    throw new Error(
      `${source} holds ${tokens.length} tokens, fewer than the ${sequences} x ${length} = ${sequences * length} requested`,
    );
  }
  const stride = Math.floor((tokens.length - length) / Math.max(1, sequences - 1));
  const ids = new Int32Array(sequences * length);
  for (let s = 0; s < sequences; s++) {
    const start = sequences === 1 ? 0 : s * stride;
    for (let t = 0; t < length; t++) ids[s * length + t] = tokens[start + t];
  }
  return { ids, sequences, length };
}
