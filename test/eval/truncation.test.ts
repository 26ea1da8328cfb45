// The shared request layout against its definition: the input is the last
// `maxPositions` of `tokens[0 .. n−2]`, and input position `from + j` holds
// the token just before target `j`.
import { describe, expect, it } from "vitest";
import { type RequestFault, truncateRequest } from "../../src/eval/truncation.ts";

const word = (f: RequestFault) => JSON.stringify(f);

describe("truncateRequest", () => {
  it("keeps a short request whole and drops only from the left of a long one", () => {
    for (const [n, start, max] of [[6, 3, 8], [9, 8, 8], [20, 12, 8], [20, 19, 4]]) {
      const tokens = Array.from({ length: n }, (_, i) => 100 + i);
      const { input, from, targets } = truncateRequest({ tokens, start }, max, 200, word);
      expect([...input]).toEqual(tokens.slice(Math.max(0, n - 1 - max), n - 1));
      expect([...targets]).toEqual(tokens.slice(start));
      for (let j = 0; j < targets.length; j++) expect(input[from + j]).toBe(tokens[start + j - 1]);
    }
  });

  it("hands each fault to the caller's wording", () => {
    expect(() => truncateRequest({ tokens: [1, 2], start: 2 }, 8, 10, word)).toThrow(word({ kind: "start", start: 2, tokens: 2 }));
    expect(() => truncateRequest({ tokens: [1, 2, 3, 4], start: 1 }, 2, 10, word))
      .toThrow(word({ kind: "continuation", length: 3, maxPositions: 2 }));
    expect(() => truncateRequest({ tokens: [1, 2.5, 3], start: 1 }, 8, 10, word)).toThrow(word({ kind: "token", at: 1, id: 2.5, vocabSize: 10 }));
    expect(() => truncateRequest({ tokens: [1, 10], start: 1 }, 8, 10, word)).toThrow(word({ kind: "token", at: 1, id: 10, vocabSize: 10 }));
  });
});
