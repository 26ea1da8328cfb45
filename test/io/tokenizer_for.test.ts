// The verbs' shared tokenizer lookup (src/io/tokenizer_for.ts): the flag,
// else the model directory's tokenizer.json, else the fixture tokenizer with
// a notice; and build-emulator's calibration text through the same lookup.
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { readCalibrationTokens } from "../../mod.ts";
import { FIXTURE_TOKENIZER, tokenizerFor } from "../../src/io/tokenizer_for.ts";
import { loadTokenizer, type Tokenizer } from "../../src/io/tokenizer.ts";
import { opt } from "../../src/model/opt.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { tempDir, TINY } from "../tune/fixture.ts";

const cfgOf = (vocabSize: number) => opt.parseConfig(optConfigJson({ ...TINY, vocabSize }));
let root: string;
let bare: string;
let own: string;
let fixture: Tokenizer;

beforeAll(async () => {
  root = await tempDir("tokenizer-for");
  bare = join(root, "bare");
  own = join(root, "own");
  await mkdir(bare);
  await mkdir(own);
  fixture = await loadTokenizer(FIXTURE_TOKENIZER);
  // A model directory with its own tokenizer.json (a copy: the lookup is told apart by the path it returns).
  await copyFile(FIXTURE_TOKENIZER, join(own, "tokenizer.json"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("tokenizerFor", () => {
  test("takes the flag, else the directory's tokenizer.json, else the fixture one with a notice", async () => {
    const cfg = cfgOf(fixture.vocabSize);
    expect((await tokenizerFor(bare, cfg, join(own, "tokenizer.json"), true)).path).toBe(join(own, "tokenizer.json"));
    expect((await tokenizerFor(own, cfg, undefined, true)).path).toBe(join(own, "tokenizer.json"));
    const notice = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const { path, tokenizer } = await tokenizerFor(bare, cfg, undefined, false);
      expect(path).toBe(FIXTURE_TOKENIZER);
      expect(tokenizer.vocabSize).toBe(fixture.vocabSize);
      expect(notice).toHaveBeenCalledWith(`offtune: no tokenizer.json in model "${bare}"; using ${FIXTURE_TOKENIZER}`);
      notice.mockClear();
      await tokenizerFor(bare, cfg, undefined, true);
      expect(notice).not.toHaveBeenCalled();
    } finally {
      notice.mockRestore();
    }
  });

  test("refuses a tokenizer with more ids than the model", async () => {
    await expect(tokenizerFor(own, cfgOf(fixture.vocabSize - 1), undefined, true)).rejects.toThrow(
      `Tokenizer has ${fixture.vocabSize} ids but the model "${own}" only ${fixture.vocabSize - 1}`,
    );
  });
});

describe("readCalibrationTokens", () => {
  test("tokenizes text without special tokens through the same lookup", async () => {
    const text = "The cat sat on the mat.";
    const file = join(root, "calibration.txt");
    await writeFile(file, text);
    const tokens = await readCalibrationTokens(file, bare, cfgOf(fixture.vocabSize), true);
    expect(Array.from(tokens)).toEqual(fixture.encode(text, { addSpecialTokens: false }));
  });
});
