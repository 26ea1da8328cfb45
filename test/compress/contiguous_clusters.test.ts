// CRaSh's contiguous clustering (src/compress/contiguous_clusters.ts,
// docs/METHOD.md §3 "CRaSh") on similarities with known groups.
import { describe, expect, it } from "vitest";
import { clusterAdjacent } from "../../src/compress/contiguous_clusters.ts";
import { ckaMatrix } from "../../src/stats/cka.ts";
import { normalRng, randomMatrix } from "../linalg/reference.ts";

/** A similarity matrix that is `inside` within each group of `sizes` (consecutive) and `across` between groups. */
function blockSimilarity(sizes: number[], inside: number, across: number): Float64Array {
  const group = sizes.flatMap((n, g) => Array<number>(n).fill(g));
  const m = group.length;
  return Float64Array.from({ length: m * m }, (_, ij) => {
    const [i, j] = [Math.floor(ij / m), ij % m];
    return i === j ? 1 : group[i] === group[j] ? inside : across;
  });
}

describe("clusterAdjacent", () => {
  it("recovers known groups of similar consecutive blocks", () => {
    expect(clusterAdjacent(blockSimilarity([3, 2, 1, 2], 0.9, 0.2), 8, 4)).toEqual([[0, 1, 2], [3, 4], [5], [6, 7]]);
  });

  it("splits the least similar neighbours when asked for fewer groups than exist", () => {
    const s = blockSimilarity([2, 2, 2], 0.9, 0.2);
    s[1 * 6 + 2] = s[2 * 6 + 1] = 0.6; // groups 0 and 1 touch more closely than 1 and 2
    expect(clusterAdjacent(s, 6, 2)).toEqual([[0, 1, 2, 3], [4, 5]]);
  });

  it("keeps groups contiguous even when distant blocks are the most similar", () => {
    const s = blockSimilarity([1, 1, 1, 1], 1, 0.1);
    s[0 * 4 + 3] = s[3 * 4 + 0] = 0.99; // blocks 0 and 3 alike, but not neighbours
    s[1 * 4 + 2] = s[2 * 4 + 1] = 0.5;
    expect(clusterAdjacent(s, 4, 3)).toEqual([[0], [1, 2], [3]]);
  });

  it("is deterministic on ties (the leftmost pair merges) and covers K = M and K = 1", () => {
    const flat = new Float64Array(16).fill(0.5);
    expect(clusterAdjacent(flat, 4, 2)).toEqual([[0, 1, 2], [3]]);
    expect(clusterAdjacent(flat, 4, 4)).toEqual([[0], [1], [2], [3]]);
    expect(clusterAdjacent(flat, 4, 1)).toEqual([[0, 1, 2, 3]]);
  });

  it("groups representations built to be alike, through their CKA", () => {
    const rng = normalRng(11);
    const bases = [randomMatrix(200, 6, rng), randomMatrix(200, 6, rng), randomMatrix(200, 6, rng)];
    const layout = [0, 0, 1, 1, 1, 2]; // which base each of 6 blocks perturbs
    const reps = layout.map((g) => {
      const noise = randomMatrix(200, 6, rng);
      const data = bases[g].data.map((v, i) => v + 0.2 * noise.data[i]);
      return { width: 6, chunks: 1, read: () => ({ rows: 200, cols: 6, data: data.slice() }) };
    });
    expect(clusterAdjacent(ckaMatrix(reps), 6, 3)).toEqual([[0, 1], [2, 3, 4], [5]]);
  });

  it("refuses impossible group counts and malformed similarities", () => {
    const s = new Float64Array(9).fill(1);
    expect(() => clusterAdjacent(s, 3, 0)).toThrow("0 groups of 3 blocks is not possible");
    expect(() => clusterAdjacent(s, 3, 4)).toThrow("4 groups of 3 blocks is not possible");
    expect(() => clusterAdjacent(s, 4, 2)).toThrow("similarity has 9 entries, expected 4 × 4");
    expect(() => clusterAdjacent(s.fill(NaN, 4, 5), 3, 2)).toThrow("similarity has NaN at (1, 1)");
  });
});
