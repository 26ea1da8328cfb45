/**
 * Contiguous clustering of consecutive blocks by the similarity of their
 * representations: CRaSh's "clustering" step (docs/METHOD.md §3 "CRaSh").
 *
 * Agglomerative, over adjacent groups only, so every group is a run of
 * consecutive blocks: start with each of the `M` blocks alone, then
 * repeatedly merge the two neighbouring groups of highest *average
 * linkage* (the mean similarity over all pairs of one block from each)
 * until `K` groups remain. Deterministic: of equally linked neighbours the
 * leftmost pair merges. Pure numbers, no model: the similarity is any
 * symmetric `[M, M]` matrix (CKA, `src/stats/cka.ts`).
 *
 * @module
 */

/**
 * The `k` contiguous groups of positions `0..m-1` the module's merging
 * gives for `similarity` (`[m, m]` row-major), in order, each listing its
 * positions in increasing order.
 *
 * @throws RangeError when `k` is not an integer in `[1, m]` or `similarity`
 *   is not `m × m` finite numbers
 */
export function clusterAdjacent(similarity: ArrayLike<number>, m: number, k: number): number[][] {
  if (!Number.isInteger(m) || m < 1) throw new RangeError(`clusterAdjacent: need at least one block, got ${m}`);
  if (!Number.isInteger(k) || k < 1 || k > m) throw new RangeError(`clusterAdjacent: ${k} groups of ${m} blocks is not possible (1 ≤ K ≤ M)`);
  if (similarity.length !== m * m) throw new RangeError(`clusterAdjacent: similarity has ${similarity.length} entries, expected ${m} × ${m}`);
  for (let i = 0; i < similarity.length; i++) {
    if (!Number.isFinite(similarity[i])) throw new RangeError(`clusterAdjacent: similarity has ${similarity[i]} at (${Math.floor(i / m)}, ${i % m})`);
  }
  const linkage = (a: number[], b: number[]) => {
    let sum = 0;
    for (const i of a) for (const j of b) sum += similarity[i * m + j];
    return sum / (a.length * b.length);
  };
  const groups = Array.from({ length: m }, (_, i) => [i]);
  while (groups.length > k) {
    let best = 0;
    let bestLinkage = -Infinity;
    for (let g = 0; g + 1 < groups.length; g++) {
      const l = linkage(groups[g], groups[g + 1]);
      if (l > bestLinkage) [best, bestLinkage] = [g, l];
    }
    groups.splice(best, 2, [...groups[best], ...groups[best + 1]]);
  }
  return groups;
}
