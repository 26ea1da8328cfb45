/**
 * A byte-level BPE trainer (GPT-2 style), producing the vocabulary and ranked
 * merges of the project's own tokenizer (see `tokenizer_json.ts` for the file
 * it becomes).
 *
 * Steps: text is cut into pre-tokens by GPT-2's regex (`'s|'t|…| ?\p{L}+|…`)
 * and each pre-token's UTF-8 bytes are written in GPT-2's byte-level alphabet;
 * identical pre-tokens are counted once with their frequency. Training then
 * repeats: take the adjacent symbol pair with the highest total frequency,
 * add its concatenation to the vocabulary, and merge it left to right in
 * every word holding it, until the vocabulary is full.
 *
 * Ids: the special tokens first (in the order given), then the 256 bytes in
 * byte order, then each new merge result in merge order, so ids are dense
 * `0..V-1`. A merge whose result string already exists (`a`+`bc` after
 * `ab`+`c`) reuses that id, as Hugging Face's trainer does, so there can be
 * slightly more merges than `V - specials - 256`.
 *
 * Tie-break (deterministic): among pairs of equal frequency, the pair with
 * the smaller left id wins, then the smaller right id (ids as above, so older
 * tokens and lower bytes first).
 *
 * Speed: pair counts are updated incrementally. Each pair keeps the list of
 * words it occurs in; a merge revisits only those words, subtracts their old
 * pairs and adds their new ones; a lazy max-heap (stale entries skipped on
 * pop) finds the next pair. 6k merges over ~30 MB of text take well under a
 * minute after counting.
 *
 * @module
 */
import { BYTE_TO_CHAR, CHAR_TO_BYTE, GPT2_SPLIT_PATTERN, toByteLevel } from "../io/tokenizer/byte_level.ts";

/** Pre-token (in byte-level characters) to its number of occurrences. */
export type WordCounts = Map<string, number>;

/** Adds the GPT-2 pre-tokens of `text` to `counts` (created when absent) and returns it. */
export function countPreTokens(text: string, counts: WordCounts = new Map()): WordCounts {
  const raw = new Map<string, number>();
  for (const match of text.matchAll(new RegExp(GPT2_SPLIT_PATTERN, "gu"))) {
    raw.set(match[0], (raw.get(match[0]) ?? 0) + 1);
  }
  for (const [piece, n] of raw) {
    const word = toByteLevel(piece);
    counts.set(word, (counts.get(word) ?? 0) + n);
  }
  return counts;
}

/** What {@link trainBpe} needs besides the counts. */
export interface BpeTrainOptions {
  /** Final vocabulary size, special tokens and the 256 bytes included. */
  vocabSize: number;
  /** Special tokens, given the first ids in this order (e.g. OPT's `<s>`, `<pad>`, `</s>`, `<unk>`). */
  specialTokens: readonly string[];
  /** Called every 500 merges with the number done. */
  onProgress?: (merges: number) => void;
}

/** A trained vocabulary: `tokens[id]` is the token string, `merges[k]` the k-th merge. */
export interface BpeVocabulary {
  tokens: string[];
  merges: Array<[string, string]>;
  /** Frequency of each merged pair when it was chosen (for inspection and tests). */
  mergeCounts: number[];
}

/** Pair key: ids < 2^16, so `left * 2^16 + right` is exact. */
const KEY_BASE = 65536;

/** A max-heap of (count, key) with the tie-break of the module doc (smaller key first). */
class PairHeap {
  #counts: number[] = [];
  #keys: number[] = [];

  get size(): number {
    return this.#keys.length;
  }

  #above(i: number, j: number): boolean {
    const ci = this.#counts[i];
    const cj = this.#counts[j];
    return ci > cj || (ci === cj && this.#keys[i] < this.#keys[j]);
  }

  #swap(i: number, j: number): void {
    [this.#counts[i], this.#counts[j]] = [this.#counts[j], this.#counts[i]];
    [this.#keys[i], this.#keys[j]] = [this.#keys[j], this.#keys[i]];
  }

  push(count: number, key: number): void {
    this.#counts.push(count);
    this.#keys.push(key);
    let i = this.#keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#above(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  pop(): { count: number; key: number } {
    const top = { count: this.#counts[0], key: this.#keys[0] };
    const lastCount = this.#counts.pop()!;
    const lastKey = this.#keys.pop()!;
    if (this.#keys.length > 0) {
      this.#counts[0] = lastCount;
      this.#keys[0] = lastKey;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.#keys.length && this.#above(l, best)) best = l;
        if (r < this.#keys.length && this.#above(r, best)) best = r;
        if (best === i) break;
        this.#swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Trains byte-level BPE on pre-token counts. */
export function trainBpe(counts: WordCounts, options: BpeTrainOptions): BpeVocabulary {
  const { vocabSize, specialTokens } = options;
  const base = specialTokens.length;
  if (vocabSize < base + 256 || vocabSize > KEY_BASE) {
    throw new Error(`Vocabulary size ${vocabSize} must lie in [${base + 256}, ${KEY_BASE}]`);
  }
  const tokens: string[] = [...specialTokens, ...BYTE_TO_CHAR];
  const tokenIds = new Map(tokens.map((t, id) => [t, id]));
  if (tokenIds.size !== tokens.length) throw new Error("Special tokens must be distinct and outside the byte alphabet");
  const merges: Array<[string, string]> = [];
  const mergeCounts: number[] = [];

  // Words as symbol-id arrays, sorted by their string so the run does not depend on input order.
  const entries = [...counts.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const words: number[][] = entries.map(([word]) => Array.from(word, (ch) => {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) throw new Error(`Pre-token ${JSON.stringify(word)} holds a character outside the byte-level alphabet`);
    return base + b;
  }));
  const freq = entries.map(([, n]) => n);

  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addPair = (key: number, n: number, changed: Set<number>) => {
    const next = (pairCounts.get(key) ?? 0) + n;
    if (next === 0) pairCounts.delete(key);
    else pairCounts.set(key, next);
    changed.add(key);
  };
  const initial = new Set<number>();
  words.forEach((syms, w) => {
    for (let i = 0; i + 1 < syms.length; i++) {
      const key = syms[i] * KEY_BASE + syms[i + 1];
      addPair(key, freq[w], initial);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  });
  const heap = new PairHeap();
  for (const key of initial) heap.push(pairCounts.get(key)!, key);

  const visited = new Int32Array(words.length).fill(-1);
  while (tokens.length < vocabSize && heap.size > 0) {
    const { count, key } = heap.pop();
    if (pairCounts.get(key) !== count) continue; // stale entry
    const a = Math.floor(key / KEY_BASE);
    const b = key % KEY_BASE;
    const text = tokens[a] + tokens[b];
    let merged = tokenIds.get(text);
    if (merged !== undefined && merged < base) {
      // The pair spells a special token (say "<s>"): never merge it, so that text stays text.
      pairCounts.delete(key);
      continue;
    }
    if (merged === undefined) {
      merged = tokens.length;
      tokens.push(text);
      tokenIds.set(text, merged);
    }
    merges.push([tokens[a], tokens[b]]);
    mergeCounts.push(count);
    const stamp = merges.length;

    const changed = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      if (visited[w] === stamp) continue;
      visited[w] = stamp;
      const syms = words[w];
      let holds = false;
      for (let i = 0; i + 1 < syms.length && !holds; i++) holds = syms[i] === a && syms[i + 1] === b;
      if (!holds) continue;
      const n = freq[w];
      for (let i = 0; i + 1 < syms.length; i++) addPair(syms[i] * KEY_BASE + syms[i + 1], -n, changed);
      const next: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(merged);
          i++;
        } else {
          next.push(syms[i]);
        }
      }
      for (let i = 0; i + 1 < next.length; i++) {
        const k = next[i] * KEY_BASE + next[i + 1];
        addPair(k, n, changed);
        if (next[i] === merged || next[i + 1] === merged) {
          const list = pairWords.get(k);
          if (list === undefined) pairWords.set(k, [w]);
          else if (list[list.length - 1] !== w) list.push(w);
        }
      }
      words[w] = next;
    }
    pairWords.delete(key);
    for (const k of changed) {
      const c = pairCounts.get(k);
      if (c !== undefined && c > 0) heap.push(c, k);
    }
    if (merges.length % 500 === 0) options.onProgress?.(merges.length);
  }
  return { tokens, merges, mergeCounts };
}
