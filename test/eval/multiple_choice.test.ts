/**
 * Multiple-choice scoring: lm-eval's pair encoding, acc / acc_norm picks
 * against log-likelihoods from a plain one-sequence forward, and the
 * per-task summary.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { McItem } from "../../src/data/tasks/types.ts";
import {
  charLength,
  encodePair,
  type McItemResult,
  type PairEncoder,
  pickChoices,
  scoreMultipleChoice,
  summarizeMultipleChoice,
} from "../../src/eval/multiple_choice.ts";
import { loadTokenizer, type Tokenizer } from "../../src/io/tokenizer.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { goldenWithBlocks, referenceLogprob } from "./reference.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

/** One id per character (ids 3..271 fit the golden OPT's 272-token vocabulary); BOS 2. */
const charEncoder: PairEncoder = {
  bosId: 2,
  encode: (text) => [...text].map((c) => 3 + (c.codePointAt(0)! % 269)),
};

/** The first index of the largest value, written out for the reference. */
function firstMax(values: number[]): number {
  return values.indexOf(Math.max(...values));
}

describe("encodePair (lm-eval _encode_pair)", () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadTokenizer(new URL("../../fixtures/tokenizer/tokenizer.json", import.meta.url).pathname);
  });

  it("puts BOS first and splits at the context's token count", () => {
    const context = "Question: What is the opposite of \"wet\"?\nAnswer:";
    const r = encodePair(tokenizer, context, " dry");
    const plain = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
    expect(r.tokens).toEqual([tokenizer.bosId, ...plain(context + " dry")]);
    expect(r.start).toBe(1 + plain(context).length);
    expect(tokenizer.decode(Array.from(r.tokens).slice(r.start))).toBe(" dry");
    const noBos = encodePair(tokenizer, context, " dry", { bos: false });
    expect(noBos.tokens).toEqual(plain(context + " dry"));
    expect(noBos.start).toBe(r.start - 1);
  });

  it("moves the context's trailing whitespace into the continuation", () => {
    expect(encodePair(tokenizer, "Answer: ", "yes")).toEqual(encodePair(tokenizer, "Answer:", " yes"));
  });

  it("refuses an empty continuation and a missing BOS", () => {
    expect(() => encodePair(tokenizer, "Answer:", "")).toThrow('Continuation "" adds no token');
    expect(() => encodePair({ ...charEncoder, bosId: undefined }, "a", " b")).toThrow("names no BOS token");
  });
});

describe("pickChoices and charLength", () => {
  it("acc takes the largest sum, acc_norm the largest sum per character", () => {
    // -4/2 = -2 < -6/6 = -1: the longer choice wins once normalised.
    expect(pickChoices([-4, -6], [2, 6])).toEqual({ pred: 0, predNorm: 1 });
    expect(pickChoices([-3, -4, -1], [3, 8, 1])).toEqual({ pred: 2, predNorm: 1 });
    // Ties go to the first maximum (numpy argmax): -3/3 = -1/1.
    expect(pickChoices([-3, -3, -1], [3, 3, 1])).toEqual({ pred: 2, predNorm: 0 });
    expect(() => pickChoices([-1, -2], [1])).toThrow("Got 2 log-likelihoods for 1 choice lengths");
    expect(() => pickChoices([-1, -2], [1, 0])).toThrow("Choice lengths must be positive");
  });

  it("counts code points, as Python's len", () => {
    expect(charLength(" whale")).toBe(6);
    expect(charLength(" 🐋é")).toBe(3); // "🐋" is two UTF-16 units
  });
});

describe("scoreMultipleChoice on the golden OPT", () => {
  const golden = goldenWithBlocks("opt");
  const expectedLogprob = (context: string, choice: string) => {
    const ctx = [2, ...charEncoder.encode(context)];
    return referenceLogprob(golden.model, golden.blocks, [...ctx, ...charEncoder.encode(choice)], ctx.length);
  };


  it("scores each choice as the plain forward does and picks as the reference argmaxes", async () => {
    const items: McItem[] = [
      { id: "a", context: "The whale", choices: [" swam", " sank deep", " x"], gold: 0, doc: "" },
      { id: "b", context: "Answer:", choices: [" no", " yes"], gold: 1, doc: "" },
      { id: "c", context: "Call me", choices: [" Ishmael", " Ahab", " Queequeg", " Starbuck"], gold: 2, doc: "" },
    ];
    const before = tf.memory().numTensors;
    const results = await scoreMultipleChoice(golden.model, charEncoder, items);
    expect(tf.memory().numTensors).toBe(before);
    results.forEach((r, i) => {
      const item = items[i];
      const want = item.choices.map((c) => expectedLogprob(item.context, c));
      expect(r.id).toBe(item.id);
      expect(r.gold).toBe(item.gold);
      expect(r.lengths).toEqual(item.choices.map((c) => c.length));
      r.logprobs.forEach((lp, j) => expect(Math.abs(lp - want[j])).toBeLessThan(1e-4));
      expect(r.pred).toBe(firstMax(want));
      expect(r.predNorm).toBe(firstMax(want.map((w, j) => w / item.choices[j].length)));
    });
  });

  it("acc and acc_norm pick differently on a constructed item", async () => {
    // A short and a long choice: look for a context where the short one has the
    // larger sum but the long one the larger sum per character.
    const short = " ab";
    const long = " abcdefghijklmn";
    const context = ["Q:", "Say", "Then", "It was", "Go", "Once", "A", "Hm"].find((c) => {
      const s = expectedLogprob(c, short);
      const l = expectedLogprob(c, long);
      return s > l && l / long.length > s / short.length;
    });
    expect(context, "a context where normalisation flips the pick").toBeDefined();
    const [r] = await scoreMultipleChoice(golden.model, charEncoder, [{ id: "flip", context: context!, choices: [short, long], gold: 1, doc: "" }]);
    expect(r.pred).toBe(0);
    expect(r.predNorm).toBe(1);
    const summary = summarizeMultipleChoice([r]);
    expect(summary.acc.mean).toBe(0);
    expect(summary.accNorm.mean).toBe(1);
  });

  it("names the item whose gold or choice is bad", async () => {
    const bad: McItem = { id: "bad-gold", context: "x", choices: [" a", " b"], gold: 2, doc: "" };
    await expect(scoreMultipleChoice(golden.model, charEncoder, [bad])).rejects.toThrow('Item "bad-gold" has gold 2 for 2 choices');
    const empty: McItem = { id: "empty", context: "x", choices: [" a", ""], gold: 0, doc: "" };
    await expect(scoreMultipleChoice(golden.model, charEncoder, [empty])).rejects.toThrow('Item "empty": Continuation "" adds no token');
  });
});

describe("summarizeMultipleChoice", () => {
  const result = (gold: number, pred: number, predNorm: number, k: number): McItemResult => ({
    id: "",
    gold,
    pred,
    predNorm,
    logprobs: new Array(k).fill(-1),
    lengths: new Array(k).fill(1),
  });

  it("counts hits of both picks and averages 1/k for chance", () => {
    const results = [result(0, 0, 1, 2), result(1, 1, 1, 4), result(2, 0, 2, 4), result(3, 3, 0, 4)];
    const s = summarizeMultipleChoice(results);
    expect(s.n).toBe(4);
    expect(s.acc.mean).toBe(0.75);
    expect(s.accNorm.mean).toBe(0.5);
    expect(s.chance).toBeCloseTo((1 / 2 + 3 / 4) / 4, 12);
    expect(s.aboveChance).toBe(s.acc.ci[0] > s.chance);
  });

  it("marks a score above chance only when the whole interval is", () => {
    const many = Array.from({ length: 400 }, (_, i) => result(0, i % 10 < 6 ? 0 : 1, i % 25 < 7 ? 0 : 1, 4));
    const s = summarizeMultipleChoice(many);
    expect(s.acc.mean).toBe(0.6);
    expect(s.aboveChance).toBe(true);
    expect(s.accNorm.mean).toBe(0.28);
    expect(s.accNorm.ci[0]).toBeLessThan(0.25);
    expect(s.aboveChanceNorm).toBe(false);
  });
});
