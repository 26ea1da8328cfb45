/**
 * ScaleOT's cheap layer importance and the comparison of two importance
 * orders (docs/METHOD.md §3 "ScaleOT"). The cheap estimator scores a middle
 * block by how much it changes the hidden states on calibration text,
 *
 *     importance_j = (1/n) Σ_t (1 − cos(x_t, y_t))
 *
 * with `x_t` and `y_t` the block's input and output at token `t` (every
 * position of every calibration sequence): a block that is (nearly) the
 * identity scores (nearly) 0 and is the first replaced.
 *
 * @module
 */
import { sequenceChunks } from "../io/activation_store.ts";
import type { HiddenStates } from "../compress/harmonizer_fit.ts";

/** The cheap importance of one block from its calibration input and output `[N, T, d]` (module doc), read `chunk` sequences at a time. */
export function cosineImportance(input: HiddenStates, output: HiddenStates, chunk = 8): number {
  const d = input.width;
  if (output.sequences !== input.sequences || output.length !== input.length || output.width !== d) {
    throw new Error(`Block input [${input.sequences}, ${input.length}, ${d}] and output [${output.sequences}, ${output.length}, ${output.width}] differ in shape`);
  }
  let sum = 0;
  let tokens = 0;
  for (const [from, to] of sequenceChunks(input.sequences, chunk)) {
    const x = input.read(from, to); // [n, T, d]
    const y = output.read(from, to); // [n, T, d]
    for (let at = 0; at < x.length; at += d) {
      let xy = 0, xx = 0, yy = 0;
      for (let k = at; k < at + d; k++) {
        xy += x[k] * y[k];
        xx += x[k] * x[k];
        yy += y[k] * y[k];
      }
      const norms = Math.sqrt(xx * yy);
      sum += 1 - (norms > 0 ? xy / norms : 1); // a zero vector on either side counts as unchanged
      tokens++;
    }
  }
  return sum / tokens;
}

/** Positions of the `count` least important entries of `importance`, ascending by position (ties: the lower position is less important). */
export function leastImportant(importance: ArrayLike<number>, count: number): number[] {
  if (!Number.isInteger(count) || count < 0 || count > importance.length) {
    throw new RangeError(`Cannot pick ${count} of ${importance.length} blocks`);
  }
  const order = Array.from({ length: importance.length }, (_, i) => i).sort((a, b) => importance[a] - importance[b] || a - b);
  return order.slice(0, count).sort((a, b) => a - b);
}

/** Ranks 1..n of `values` (ascending), ties sharing their average rank. */
function ranks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const out = new Float64Array(n);
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && values[order[j + 1]] === values[order[i]]) j++;
    for (let k = i; k <= j; k++) out[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/**
 * Spearman's rank correlation of two importance vectors over the same
 * blocks: the Pearson correlation of their ranks (ties averaged), in
 * [−1, 1]; 1 when both order the blocks alike. NaN when either is constant
 * (no order to compare) or there are fewer than two blocks.
 */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`Spearman correlation of ${a.length} and ${b.length} values`);
  const n = a.length;
  if (n < 2) return NaN;
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (n + 1) / 2;
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < n; i++) {
    ab += (ra[i] - mean) * (rb[i] - mean);
    aa += (ra[i] - mean) ** 2;
    bb += (rb[i] - mean) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : NaN;
}
