/**
 * The BPE model of a Hugging Face `tokenizer.json` (`model.type == "BPE"`):
 * a vocabulary and ranked merges, applied to one pre-tokenized word at a time.
 *
 * Algorithm (Sennrich et al.; openai/gpt-2 `encoder.py` `bpe()`): start from
 * one symbol per character; repeatedly take the adjacent pair with the lowest
 * merge rank and merge its occurrences left to right; stop when no adjacent
 * pair has a rank. Words are cached, since text repeats words heavily.
 *
 * @module
 */

/** A BPE vocabulary with ranked merges. */
export interface BpeModel {
  /** Token string to id. */
  readonly vocab: ReadonlyMap<string, number>;
  /** The ids of one pre-tokenized word (characters from the model's alphabet). */
  encodeWord(word: string): number[];
}

/** The fields of `tokenizer.json`'s `model` object this module uses. */
export interface BpeJson {
  vocab: Record<string, number>;
  merges: Array<string | [string, string]>;
  unk_token?: string | null;
  ignore_merges?: boolean;
}

/** Cached words before the cache is cleared (bounds memory on huge corpora). */
const CACHE_LIMIT = 200_000;

/**
 * Builds a BPE model. Throws an Error for a merge that is malformed or refers
 * to tokens missing from the vocabulary; `where` (the tokenizer file) is named
 * in encode-time errors.
 */
export function createBpe(json: BpeJson, where: string): BpeModel {
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(json.vocab)) {
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new Error(`vocab entry ${JSON.stringify(token)} has invalid id ${JSON.stringify(id)}`);
    }
    vocab.set(token, id);
  }
  const stride = Math.max(0, ...vocab.values()) + 1;
  // (left id) * stride + (right id) -> rank and merged id, as in HF's Rust BPE.
  const merges = new Map<number, { rank: number; id: number }>();
  json.merges.forEach((merge, rank) => {
    const pair = typeof merge === "string" ? merge.split(" ") : merge;
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new Error(`merge ${rank} ${JSON.stringify(merge)} is not a pair of tokens`);
    }
    const [a, b] = pair;
    const ia = vocab.get(a);
    const ib = vocab.get(b);
    const id = vocab.get(a + b);
    if (ia === undefined || ib === undefined || id === undefined) {
      const missing = [a, b, a + b].find((t) => !vocab.has(t));
      throw new Error(`merge ${rank} ${JSON.stringify(merge)} uses ${JSON.stringify(missing)}, which is not in the vocab`);
    }
    const key = ia * stride + ib;
    if (!merges.has(key)) merges.set(key, { rank, id });
  });
  const unk = json.unk_token == null ? undefined : vocab.get(json.unk_token);
  if (json.unk_token != null && unk === undefined) {
    throw new Error(`unk_token ${JSON.stringify(json.unk_token)} is not in the vocab`);
  }
  const ignoreMerges = json.ignore_merges === true;

  function initialSymbols(word: string): number[] {
    const ids: number[] = [];
    for (const ch of word) {
      const id = vocab.get(ch) ?? unk;
      if (id === undefined) {
        throw new Error(
          `Cannot encode with tokenizer "${where}": character ${JSON.stringify(ch)} is not in the vocab and there is no unk_token`,
        );
      }
      ids.push(id);
    }
    return ids;
  }

  function merge(word: string): number[] {
    const whole = ignoreMerges ? vocab.get(word) : undefined;
    if (whole !== undefined) return [whole];
    let symbols = initialSymbols(word);
    while (symbols.length > 1) {
      let best: { rank: number; id: number } | undefined;
      let bestKey = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] * stride + symbols[i + 1];
        const m = merges.get(key);
        if (m && (!best || m.rank < best.rank)) {
          best = m;
          bestKey = key;
        }
      }
      if (!best) break;
      const next: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] * stride + symbols[i + 1] === bestKey) {
          next.push(best.id);
          i++;
        } else {
          next.push(symbols[i]);
        }
      }
      symbols = next;
    }
    return symbols;
  }

  const cache = new Map<string, number[]>();
  return {
    vocab,
    encodeWord(word) {
      let ids = cache.get(word);
      if (ids === undefined) {
        ids = merge(word);
        if (cache.size >= CACHE_LIMIT) cache.clear();
        cache.set(word, ids);
      }
      return ids;
    },
  };
}
