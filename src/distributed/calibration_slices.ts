/**
 * Where a queued GradOT build cuts its calibration set into slices, one job
 * each (docs/DISTRIBUTED.md "Calibration slices"). A slice's bytes must not
 * depend on where it was cut: every bound is a bound of the block chunks
 * (`--chunk`) and of the head's loss chunks (whose sums and gradient scale
 * are per chunk), so a slice job computes exactly the chunks one process
 * would. The bounds depend on the calibration and the chunk sizes only,
 * never on the number of workers.
 *
 * @module
 */

/** A slice's calibration tokens at least (when there are that many): about one streamed head chunk, so a job's reads of the checkpoint stay small beside its work. */
export const SLICE_TOKENS = 4096;

/** One calibration slice: sequences `[from, to)` of the calibration set. */
export interface CalibrationSlice {
  /** The first sequence. */
  from: number;
  /** One past the last sequence. */
  to: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * The slices of `sequences` sequences of `length` tokens: consecutive
 * ranges of the same size (the last maybe shorter), each a multiple of both
 * `chunk` and `headChunk` sequences and of at least {@link SLICE_TOKENS}
 * tokens.
 *
 * @throws RangeError when a count is not a positive integer
 */
export function calibrationSlices(sequences: number, length: number, chunk: number, headChunk: number): CalibrationSlice[] {
  for (const [name, v] of [["sequences", sequences], ["length", length], ["chunk", chunk], ["headChunk", headChunk]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`calibrationSlices: ${name} must be a positive integer, got ${v}`);
  }
  const unit = (chunk / gcd(chunk, headChunk)) * headChunk; // the least common multiple: a bound of both chunkings
  const size = unit * Math.max(1, Math.ceil(SLICE_TOKENS / (unit * length)));
  const slices: CalibrationSlice[] = [];
  for (let from = 0; from < sequences; from += size) slices.push({ from, to: Math.min(sequences, from + size) });
  return slices;
}
