/**
 * A compact index of the word n-grams of a large text collection, for test-set
 * decontamination (the GPT-3 recipe: an evaluation item is contaminated when
 * it shares any 13-word n-gram with the training text). Each n-gram is hashed
 * to 52 bits and the hashes are kept sorted in one `Float64Array`, so the
 * pretraining corpus (millions of n-grams) costs 8 bytes an n-gram and a
 * lookup is a binary search. Hash collisions can only add false "found"
 * answers (a clean item dropped), never hide an overlap.
 *
 * @module
 */
import { wordsOf } from "./text.ts";

/** The n-gram length of the contamination check (GPT-3's choice). */
export const CONTAMINATION_NGRAM = 13;

/** 32-bit FNV-1a of a word, with a lane-specific offset. */
function wordHash(word: string, lane: number): number {
  let h = (0x811c9dc5 ^ lane) >>> 0;
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The 52-bit hashes of every n-gram of `words` (none when there are fewer than n words). */
export function ngramHashes(words: readonly string[], n: number): Float64Array {
  const count = Math.max(0, words.length - n + 1);
  const out = new Float64Array(count);
  if (count === 0) return out;
  const lo = words.map((w) => wordHash(w, 0));
  const hi = words.map((w) => wordHash(w, 0x5bd1e995));
  for (let i = 0; i < count; i++) {
    let a = 0x9e3779b9;
    let b = 0x7f4a7c15;
    for (let k = 0; k < n; k++) {
      a = Math.imul(a ^ lo[i + k], 0x85ebca6b) ^ (a >>> 13);
      b = Math.imul(b ^ hi[i + k], 0xc2b2ae35) ^ (b >>> 16);
    }
    out[i] = (a >>> 0) + (b & 0xfffff) * 4294967296;
  }
  return out;
}

/** A sorted set of n-gram hashes built from many texts. */
export class NgramIndex {
  /** The n-gram length. */
  readonly n: number;
  readonly #hashes: Float64Array;

  private constructor(n: number, hashes: Float64Array) {
    this.n = n;
    this.#hashes = hashes;
  }

  /** Indexes the n-grams of every text (words as {@link wordsOf} finds them). */
  static build(texts: Iterable<string>, n = CONTAMINATION_NGRAM): NgramIndex {
    const parts: Float64Array[] = [];
    let total = 0;
    for (const text of texts) {
      const hashes = ngramHashes(wordsOf(text), n);
      parts.push(hashes);
      total += hashes.length;
    }
    const all = new Float64Array(total);
    let at = 0;
    for (const part of parts) {
      all.set(part, at);
      at += part.length;
    }
    all.sort();
    let unique = 0;
    for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) all[unique++] = all[i];
    return new NgramIndex(n, all.slice(0, unique));
  }

  /** How many distinct n-grams are indexed. */
  get size(): number {
    return this.#hashes.length;
  }

  /** Whether the index holds this hash. */
  has(hash: number): boolean {
    const h = this.#hashes;
    let lo = 0;
    let hi = h.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (h[mid] === hash) return true;
      if (h[mid] < hash) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** Whether `text` shares at least one n-gram with the indexed texts. */
  overlaps(text: string): boolean {
    for (const hash of ngramHashes(wordsOf(text), this.n)) if (this.has(hash)) return true;
    return false;
  }
}
