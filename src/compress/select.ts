/**
 * The top-k selection both GradOT compressors use (docs/METHOD.md §2 "Ties at
 * the cut"): candidates ordered by a primary score (GCS, or the magnitude of
 * the `--selection magnitude` ablation), equal primaries by a secondary key
 * (the candidate's weight magnitude), equal secondaries by index, lowest
 * first. It also says whether the cut fell among equal primaries, and how
 * many kept candidates the secondary key (or the index) decided, so a build
 * can report how often the choice is not GCS's own.
 *
 * @module
 */

/**
 * What ranks the candidates (`--selection`, docs/METHOD.md §2 "Ablations"):
 * GCS (GradOT), or the weight magnitude alone at the same budget (the
 * ablation: plain truncated SVD for DRD, largest channel norms for SCP).
 */
export const SELECTIONS = ["gcs", "magnitude"] as const;

/** One of {@link SELECTIONS}. */
export type SelectionKind = typeof SELECTIONS[number];

/** How the cut of one selection related to ties (docs/METHOD.md §2 "Ties at the cut"). */
export interface TieNote {
  /** Candidates whose primary score equals the one at the cut (0 when the cut is not in a tie). */
  tied: number;
  /** Kept candidates from that tied group: chosen by the secondary key (or the index), not the primary score. */
  bySecondary: number;
  /** Of those, kept candidates whose secondary key also tied at the cut: chosen by index. */
  byIndex: number;
}

/** The kept candidates of {@link selectTop} and the {@link TieNote} of its cut. */
export interface Selection {
  /** Kept candidate indices, ascending (`[count]`). */
  kept: Int32Array;
  /** Whether and how far the cut fell among ties. */
  tie: TieNote;
}

/** Kept members of the group of `order` equal to the one at the cut under `same` (0 when the cut does not split a group). */
function keptOfSplitGroup(order: number[], count: number, same: (a: number, b: number) => boolean): number {
  if (count === 0 || count === order.length || !same(order[count - 1], order[count])) return 0;
  let kept = 0;
  for (let i = count - 1; i >= 0 && same(order[i], order[count]); i--) kept++;
  return kept;
}

/**
 * The `count` candidates of largest `primary`, equal primaries decided by
 * larger `secondary`, then by lower index. `candidates` (default: every
 * index of `primary`) restricts the choice, e.g. to DRD's unprotected
 * components. `what` names the candidates in errors ("SCP channel").
 *
 * @throws Error for a count outside [0, candidates], mismatched lengths, or a NaN score
 */
export function selectTop(
  primary: ArrayLike<number>,
  secondary: ArrayLike<number>,
  count: number,
  what: string,
  candidates?: readonly number[],
): Selection {
  const n = primary.length;
  if (secondary.length !== n) throw new Error(`${what}: ${n} scores but ${secondary.length} secondary keys`);
  const pool = candidates ?? Array.from({ length: n }, (_, i) => i);
  if (!Number.isInteger(count) || count < 0 || count > pool.length) {
    throw new Error(`${what}: cannot keep ${count} of ${pool.length} candidates`);
  }
  for (const i of pool) {
    if (Number.isNaN(primary[i])) throw new Error(`${what} ${i} has a NaN score`);
    if (Number.isNaN(secondary[i])) throw new Error(`${what} ${i} has a NaN secondary key`);
  }
  const order = [...pool].sort((a, b) => primary[b] - primary[a] || secondary[b] - secondary[a] || a - b);
  const samePrimary = (a: number, b: number) => primary[a] === primary[b];
  const bySecondary = keptOfSplitGroup(order, count, samePrimary);
  const tied = bySecondary === 0 ? 0 : pool.filter((i) => primary[i] === primary[order[count]]).length;
  const byIndex = keptOfSplitGroup(order, count, (a, b) => samePrimary(a, b) && secondary[a] === secondary[b]);
  return { kept: Int32Array.from(order.slice(0, count)).sort(), tie: { tied, bySecondary, byIndex } };
}
