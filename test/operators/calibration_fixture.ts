import type { CalibrationSet } from "../../src/records/records.ts";

/** A deterministic pseudo-random calibration set (an LCG over token ids), for the operator tests. */
export function calibrationFor(vocab: number, sequences: number, length: number): CalibrationSet {
  let s = 12345;
  const ids = new Int32Array(sequences * length).map(() => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % vocab;
  });
  return { ids, sequences, length };
}
