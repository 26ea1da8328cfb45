/**
 * Added tokens of a Hugging Face `tokenizer.json` (`added_tokens`): strings
 * such as `</s>` or `<|endoftext|>` that are cut out of the text before
 * pre-tokenization and map straight to their ids, as HF's `AddedVocabulary`
 * does: leftmost-longest match, `lstrip`/`rstrip` absorb adjacent whitespace,
 * `single_word` only matches outside words.
 *
 * @module
 */

/** One entry of `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

/** A stretch of input text, or an added token already resolved to its id. */
export type Segment = { text: string } | { id: number };

interface TrieNode {
  next: Map<string, TrieNode>;
  token?: AddedToken;
}

const WHITESPACE = /\s/u;
const WORD_CHAR = /[\p{L}\p{N}_]/u;

/** Parses `added_tokens`; throws an Error describing the first bad entry. */
export function parseAddedTokens(json: unknown): AddedToken[] {
  if (json === undefined || json === null) return [];
  if (!Array.isArray(json)) throw new Error(`added_tokens is not an array`);
  return json.map((t: Record<string, unknown>, i) => {
    if (typeof t?.content !== "string" || t.content === "" || !Number.isSafeInteger(t.id) || (t.id as number) < 0) {
      throw new Error(`added_tokens[${i}] needs a non-empty "content" and a non-negative integer "id"`);
    }
    return {
      id: t.id as number,
      content: t.content,
      special: t.special === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      singleWord: t.single_word === true,
    };
  });
}

/** Returns a function that cuts text into plain stretches and added tokens. */
export function createAddedTokenSplitter(tokens: readonly AddedToken[]): (text: string) => Segment[] {
  const root: TrieNode = { next: new Map() };
  for (const token of tokens) {
    let node = root;
    for (const ch of token.content) {
      let child = node.next.get(ch);
      if (!child) node.next.set(ch, child = { next: new Map() });
      node = child;
    }
    node.token = token;
  }

  /** Longest acceptable token starting at `i`, with its end offset. */
  function longestAt(text: string, i: number): { token: AddedToken; end: number } | undefined {
    let node: TrieNode | undefined = root;
    let best: { token: AddedToken; end: number } | undefined;
    let j = i;
    while (j < text.length) {
      const cp = text.codePointAt(j)!;
      const ch = String.fromCodePoint(cp);
      node = node.next.get(ch);
      if (!node) break;
      j += ch.length;
      const t = node.token;
      if (t && (!t.singleWord || (!WORD_CHAR.test(text.slice(i - 1, i)) && !WORD_CHAR.test(text.slice(j, j + 1))))) {
        best = { token: t, end: j };
      }
    }
    return best;
  }

  return (text) => {
    if (tokens.length === 0) return text === "" ? [] : [{ text }];
    const out: Segment[] = [];
    let plainStart = 0;
    let i = 0;
    while (i < text.length) {
      const found = longestAt(text, i);
      if (!found) {
        i++;
        continue;
      }
      let start = i;
      let end = found.end;
      if (found.token.lstrip) while (start > plainStart && WHITESPACE.test(text[start - 1])) start--;
      if (found.token.rstrip) while (end < text.length && WHITESPACE.test(text[end])) end++;
      if (start > plainStart) out.push({ text: text.slice(plainStart, start) });
      out.push({ id: found.token.id });
      plainStart = i = end;
    }
    if (plainStart < text.length) out.push({ text: text.slice(plainStart) });
    return out;
  };
}
