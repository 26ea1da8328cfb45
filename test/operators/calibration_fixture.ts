import type { CalibrationSet } from "../../src/records/records.ts";
import type { SymmetricFactor } from "../../src/stats/symmetric_factor.ts";

/** A deterministic pseudo-random calibration set (an LCG over token ids), for the operator tests. */
export function calibrationFor(vocab: number, sequences: number, length: number): CalibrationSet {
  let s = 12345;
  const ids = new Int32Array(sequences * length).map(() => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % vocab;
  });
  return { ids, sequences, length };
}

/**
 * A KFAC factor's numbers, comparable with toEqual: its matrix, or its
 * column L1 norms where it keeps only those (SCP's `G₁` once dense, and a
 * ReLU MLP's `A₂`, summed as column sums).
 */
export function factorNumbers(f: SymmetricFactor): number[] {
  return f.held.kind === "columns" ? [...f.columnAbsSums()] : [...f.dense().data];
}
