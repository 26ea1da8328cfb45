/**
 * Deterministic randomness for the data pipeline: a seeded string hash (for
 * split assignment by document id) and a seeded pseudo-random generator (for
 * distractor sampling). Both are pure functions of their seeds, so every
 * fixture rebuilds byte-identically on Node and Deno.
 *
 * @module
 */

/**
 * cyrb53: a fast 53-bit string hash with good avalanche, seeded. Used to put a
 * document in a split from its id alone, so adding or removing other
 * documents never moves it.
 */
export function hashString(text: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** `hashString` scaled to a uniform number in [0, 1). */
export function unitHash(text: string, seed: number): number {
  return hashString(text, seed) / 2 ** 53;
}

/** A seeded pseudo-random generator (mulberry32) with the sampling helpers the task builders need. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T;
  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[];
}

/** Makes a mulberry32 generator from a 32-bit seed, or from a string hashed to one. */
export function createRng(seed: number | string): Rng {
  let state = typeof seed === "string" ? hashString(seed, 0) >>> 0 : seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new Error("Cannot pick from an empty array");
      return items[int(items.length)];
    },
    shuffle<T>(items: readonly T[]): T[] {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
}
