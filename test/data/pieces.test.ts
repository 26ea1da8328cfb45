import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeFileAtomicSync } from "../../src/io/atomic.ts";
import { NgramIndex } from "../../src/data/ngram.ts";
import { createRng, hashString } from "../../src/data/random.ts";
import { SPLIT_FRACTIONS, splitOf } from "../../src/data/split.ts";
import { stratifiedTaskSplits, taskSplitOf, TASK_SPLIT_FRACTIONS } from "../../src/data/tasks/assemble.ts";
import { brownClassOf } from "../../src/data/tasks/brown_genre.ts";
import { splitVerse } from "../../src/data/tasks/kjv_verse_ending.ts";
import { clozeTargets } from "../../src/data/tasks/lastword_cloze.ts";
import { placeGold, sampleDistractors, sentenceWindows } from "../../src/data/tasks/passages.ts";
import { eraOf } from "../../src/data/tasks/sotu_era.ts";
import { unquotedBody } from "../../src/data/tasks/spam_detection.ts";
import { splitSentences, wordsOf } from "../../src/data/text.ts";
import { buildTokenStream, readTokenStream, tokenStreamBytes } from "../../src/data/token_stream.ts";

describe("text", () => {
  it("splits sentences but not at abbreviations and initials", () => {
    expect(splitSentences('Mr. Smith met J. Doe in Washington. "Why?" he asked. It was 1990. Done\nNext line')).toEqual([
      "Mr. Smith met J. Doe in Washington.",
      '"Why?" he asked.',
      "It was 1990.",
      "Done",
      "Next line",
    ]);
  });

  it("cuts whole-sentence windows within the word budget", () => {
    const text = "One two three. Four five six seven. Eight. " + "x ".repeat(20).trim() + ". Nine ten eleven twelve.";
    // min 5, max 8 words: [One..seven] (7 words), "Eight." alone is too short and the 20-word sentence resets it.
    expect(sentenceWindows(text, 5, 8)).toEqual(["One two three. Four five six seven."]);
  });
});

describe("seeded randomness", () => {
  it("hashes and draws reproducibly, and different seeds differ", () => {
    expect(hashString("kjv:Gen.1", 1)).toBe(hashString("kjv:Gen.1", 1));
    expect(hashString("kjv:Gen.1", 1)).not.toBe(hashString("kjv:Gen.1", 2));
    const a = createRng("task/test");
    const b = createRng("task/test");
    const draws = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(draws);
    expect(createRng("other").next()).not.toBe(draws[0]);
    expect(createRng(1).shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it("samples distinct distractors that avoid the gold and the excluded words", () => {
    const rng = createRng(7);
    for (let i = 0; i < 50; i++) {
      const d = sampleDistractors(rng, ["cat", "Dog", "bird", "fish", "cow"], "dog", 3, ["cow"])!;
      expect(new Set(d.map((x) => x.toLowerCase())).size).toBe(3);
      expect(d.map((x) => x.toLowerCase())).not.toContain("dog");
      expect(d).not.toContain("cow");
    }
    expect(sampleDistractors(rng, ["a", "b"], "a", 3)).toBeUndefined();
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[placeGold(rng, "g", ["x", "y", "z"]).gold]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(120);
  });
});

describe("splits", () => {
  it("sends each source's documents to holdout, valid and calibration at the configured rates", () => {
    const ids = Array.from({ length: 20000 }, (_, i) => `wordnet:n${String(i).padStart(8, "0")}`);
    const counts = { train: 0, valid: 0, calibration: 0, holdout: 0 };
    for (const id of ids) counts[splitOf(id, "wordnet")]++;
    const f = SPLIT_FRACTIONS.wordnet;
    // Binomial standard deviation at n = 20000 is below 0.0033; allow 4 sigma.
    expect(Math.abs(counts.holdout / ids.length - f.holdout)).toBeLessThan(0.014);
    expect(Math.abs(counts.valid / ids.length - f.valid)).toBeLessThan(0.004);
    expect(Math.abs(counts.calibration / ids.length - f.calibration)).toBeLessThan(0.004);
    const test = ids.filter((id) => taskSplitOf(id) === "test").length / ids.length;
    expect(Math.abs(test - TASK_SPLIT_FRACTIONS.test)).toBeLessThan(0.015);
  });

  it("stratifies held-out documents so every class reaches every task split", () => {
    const docs = [
      ...Array.from({ length: 3 }, (_, i) => ({ id: `a${i}`, label: "rare" })),
      ...Array.from({ length: 40 }, (_, i) => ({ id: `b${i}`, label: "common" })),
    ];
    const splits = stratifiedTaskSplits(docs);
    for (const label of ["rare", "common"]) {
      const got = docs.filter((d) => d.label === label).map((d) => splits.get(d.id));
      for (const s of ["train", "validation", "test"]) expect(got).toContain(s);
    }
    expect(docs.filter((d) => d.label === "common" && splits.get(d.id) === "test")).toHaveLength(20);
  });
});

describe("task helpers", () => {
  it("cuts a verse at the clause mark nearest its middle", () => {
    expect(splitVerse("And God said, Let there be light: and there was light.")).toEqual([
      "And God said, Let there be light:",
      "and there was light.",
    ]);
    expect(splitVerse("Jesus wept.")).toBeUndefined();
  });

  it("cuts the last lowercase word of a sentence, with up to 45 words of context before it", () => {
    const text = "The old man sat by the grey sea for many long days. He watched the birds fly over the cold water every single morning. " +
      "Then he rose. It was Boston. The gulls cried over the harbor and the boats came home to the quiet town at dusk.";
    expect(clozeTargets(text)).toEqual([
      { context: "The old man sat by the grey sea for many long days. He watched the birds fly over the cold water every single", word: "morning" },
      // "rose" is skipped by the stride (3 sentences), "Boston" is capitalized; the context reaches back while
      // it stays within 45 words: 13 + 3 + 3 + 20 = 39, and the first sentence (11 more) would pass 45.
      {
        context: "He watched the birds fly over the cold water every single morning. Then he rose. It was Boston. " +
          "The gulls cried over the harbor and the boats came home to the quiet town at",
        word: "dusk",
      },
    ]);
  });

  it("maps years to periods and Brown categories to classes", () => {
    expect([1790, 1849, 1850, 1913, 1950, 2021].map(eraOf)).toEqual([0, 0, 1, 2, 3, 3]);
    expect(() => eraOf(1789)).toThrow(/1789/);
    expect(["news", "lore", "learned", "romance"].map(brownClassOf)).toEqual([0, 1, 2, 3]);
    expect(() => brownClassOf("poetry")).toThrow(/poetry/);
  });

  it("drops quoted replies and attributions from an email body", () => {
    expect(unquotedBody("I agree.\n\nOn Mon, Bob wrote:\n> old text\n>> older\nThanks")).toBe("I agree.\nThanks");
  });
});

describe("NgramIndex", () => {
  it("finds exactly the texts sharing an n-gram, like a brute-force string set", () => {
    const rng = createRng(3);
    const vocab = ["the", "a", "ship", "whale", "sea", "Ahab", "white", "captain", "boat", "deep"];
    const text = (n: number) => Array.from({ length: n }, () => rng.pick(vocab)).join(" ");
    const corpus = Array.from({ length: 30 }, () => text(60));
    const index = NgramIndex.build(corpus, 5);
    const grams = new Set<string>();
    for (const doc of corpus) {
      const w = wordsOf(doc);
      for (let i = 0; i + 5 <= w.length; i++) grams.add(w.slice(i, i + 5).join(" "));
    }
    expect(index.size).toBe(grams.size);
    let hits = 0;
    for (let q = 0; q < 300; q++) {
      const query = text(8);
      const w = wordsOf(query);
      const expected = [0, 1, 2, 3].some((i) => grams.has(w.slice(i, i + 5).join(" ")));
      expect(index.overlaps(query)).toBe(expected);
      if (expected) hits++;
    }
    expect(hits).toBeGreaterThan(0);
    expect(index.overlaps("too short")).toBe(false);
  });
});

describe("token stream", () => {
  it("puts </s> before every document and round-trips little-endian Uint16", () => {
    const stream = buildTokenStream([[5, 6], [], [65535]], 2);
    expect([...stream]).toEqual([2, 5, 6, 2, 2, 65535]);
    const bytes = tokenStreamBytes(stream);
    expect([...bytes.slice(0, 4)]).toEqual([2, 0, 5, 0]);
    expect([...bytes.slice(10)]).toEqual([255, 255]);
    const dir = mkdtempSync(join(tmpdir(), "offtune-data-"));
    try {
      writeFileAtomicSync(join(dir, "x.bin"), bytes);
      expect(readTokenStream(join(dir, "x.bin"))).toEqual(stream);
      writeFileAtomicSync(join(dir, "odd.bin"), new Uint8Array(3));
      expect(() => readTokenStream(join(dir, "odd.bin"))).toThrow(/odd.bin.*3 bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => buildTokenStream([[70000]], 2)).toThrow(/70000/);
  });
});
