import { describe, expect, it } from "vitest";
import { countPreTokens, trainBpe, type WordCounts } from "../../src/data/bpe_train.ts";
import { OPT_SPECIAL_TOKENS, toTokenizerJson } from "../../src/data/tokenizer_json.ts";
import { parseTokenizer } from "../../src/io/tokenizer.ts";

const SPECIALS = OPT_SPECIAL_TOKENS;
const BASE = SPECIALS.length + 256;

/**
 * Reference BPE trainer, written from the definition with no incremental
 * bookkeeping: after every merge it recounts all pairs from scratch. Same
 * tie-break as documented (count desc, then left id asc, then right id asc).
 */
function bruteForce(counts: WordCounts, merges: number): Array<[string, string]> {
  const tokens: string[] = [...SPECIALS];
  // Byte-level alphabet rebuilt independently from GPT-2's encoder.py rule.
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    tokens.push(String.fromCharCode(printable ? b : next++));
  }
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  let words = [...counts.entries()].map(([w, n]) => ({ syms: Array.from(w, (c) => idOf.get(c)!), n }));
  const out: Array<[string, string]> = [];
  for (let m = 0; m < merges; m++) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = `${syms[i]},${syms[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + n);
      }
    }
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(",").map(Number);
      if (c > bestCount || (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (!best) break;
    const [a, b] = best;
    const text = tokens[a] + tokens[b];
    let id = idOf.get(text);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(text);
      idOf.set(text, id);
    }
    out.push([tokens[a], tokens[b]]);
    words = words.map(({ syms, n }) => {
      const merged: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          merged.push(id!);
          i++;
        } else merged.push(syms[i]);
      }
      return { syms: merged, n };
    });
  }
  return out;
}

describe("countPreTokens", () => {
  it("splits with GPT-2's regex and writes bytes in the byte-level alphabet", () => {
    const counts = countPreTokens("I'll go, go!  ok\n");
    // "I", "'ll", " go", ",", " go", "!", " " (space before a space), " ok", "\n"
    expect(Object.fromEntries(counts)).toEqual({
      I: 1, "'ll": 1, "Ġgo": 2, ",": 1, "!": 1, "Ġ": 1, "Ġok": 1, "Ċ": 1,
    });
    expect(countPreTokens("é")).toEqual(new Map([["Ã©", 1]])); // UTF-8 C3 A9
  });
});

describe("trainBpe", () => {
  it("learns the merges a hand trace predicts on Sennrich's toy corpus", () => {
    const text = "low low low low low lower lower newest newest newest newest newest newest widest widest widest";
    const counts = countPreTokens(text);
    expect(Object.fromEntries(counts)).toEqual({ low: 1, "Ġlow": 4, "Ġlower": 2, "Ġnewest": 6, "Ġwidest": 3 });
    const v = trainBpe(counts, { vocabSize: BASE + 10, specialTokens: SPECIALS });
    // Hand trace (see the module doc's tie-break; ids: Ġ=36, d=104, e=105, l=112, n=114, o=115, s=119, t=120, w=123):
    // (e,s) 9 beats (s,t) 9 on the left id; (l,o) 7 beats (o,w) 7; among the 6s (Ġ,n) < (Ġ,low) < (e,w) < ...
    expect(v.merges).toEqual([
      ["e", "s"], ["es", "t"], ["l", "o"], ["lo", "w"], ["Ġ", "n"],
      ["Ġ", "low"], ["e", "w"], ["Ġn", "ew"], ["Ġnew", "est"], ["Ġ", "w"],
    ]);
    expect(v.mergeCounts).toEqual([9, 9, 7, 7, 6, 6, 6, 6, 6, 3]);
    expect(v.tokens.length).toBe(BASE + 10);
    expect(v.tokens.slice(0, 4)).toEqual([...SPECIALS]);
    expect(v.tokens[BASE + 8]).toBe("Ġnewest");
  });

  it("matches a from-scratch recount trainer on mixed text with repeats and overlaps", () => {
    const text = [
      "Mississippi banana aaaa aaaaa abababab, the theme; thee they'll THE the 1999 2000 ",
      "Über naïve café — 😀😀 tokens tokenizer tokenization retokenize\n\n  indented\tline ",
    ].join("").repeat(3) + "banana bandana cabana";
    const counts = countPreTokens(text);
    // A vocabulary larger than the text can fill: both run until no pair is left.
    const fast = trainBpe(counts, { vocabSize: BASE + 1000, specialTokens: SPECIALS });
    const reference = bruteForce(counts, 1000);
    expect(reference.length).toBeGreaterThan(80);
    expect(fast.merges).toEqual(reference);
    // Stopping early gives the prefix.
    expect(trainBpe(counts, { vocabSize: BASE + 40, specialTokens: SPECIALS }).merges).toEqual(reference.slice(0, 40));
  });

  it("gives dense ids with every merge result in the vocabulary, loadable by the project tokenizer", () => {
    const text = "the cat sat on the mat; the cats sat on the mats. ".repeat(20);
    const v = trainBpe(countPreTokens(text), { vocabSize: BASE + 25, specialTokens: SPECIALS });
    const json = toTokenizerJson(v) as { model: { vocab: Record<string, number>; merges: string[] } };
    const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: v.tokens.length }, (_, i) => i));
    for (const m of json.model.merges) expect(json.model.vocab[m.split(" ").join("")]).toBeDefined();
    const tok = parseTokenizer(json);
    expect(tok.vocabSize).toBe(v.tokens.length);
    // " cat" was merged into one token, so " cat" encodes to its id, after OPT's leading </s>.
    expect(tok.encode(" cat")).toEqual([2, json.model.vocab["Ġcat"]]);
    const sample = "the mats sat, the cat! Ünïcode 😀 ok";
    expect(tok.decode(tok.encode(sample, { addSpecialTokens: false }))).toBe(sample);
  });

  it("refuses a vocabulary smaller than the specials plus the 256 bytes", () => {
    expect(() => trainBpe(new Map(), { vocabSize: 100, specialTokens: SPECIALS })).toThrow(/Vocabulary size 100/);
  });
});
