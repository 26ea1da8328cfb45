/**
 * The tokenizer lookup every verb that turns text into a model's ids shares
 * (eval, tune, full-ft, plug-in, build-emulator): `--tokenizer` when given,
 * else `tokenizer.json` in the model (or package) directory, else the
 * fixture tokenizer the offtune models are trained with (a notice says so).
 *
 * @module
 */
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import type { ModelConfig } from "../model/types.ts";
import { isPackage } from "../model/model_source.ts";

/** fixtures/tokenizer/tokenizer.json: the tokenizer every offtune fixture model is trained with. */
export const FIXTURE_TOKENIZER: string = fileURLToPath(new URL("../../fixtures/tokenizer/tokenizer.json", import.meta.url));

/**
 * The tokenizer for the model in `dir` (module notes), with its path. The
 * fallback to {@link FIXTURE_TOKENIZER} prints a notice unless `quiet`.
 *
 * @param explicit the `--tokenizer` flag, if given
 * @throws Error when the tokenizer has more ids than the model's vocabulary
 */
export async function tokenizerFor(
  dir: string,
  cfg: ModelConfig,
  explicit: string | undefined,
  quiet: boolean,
): Promise<{ tokenizer: Tokenizer; path: string }> {
  const own = join(dir, "tokenizer.json");
  let path = explicit ?? own;
  if (explicit === undefined && !(await access(own).then(() => true, () => false))) {
    path = FIXTURE_TOKENIZER;
    if (!quiet) {
      const what = (await isPackage(dir)) ? "package" : "model";
      console.error(`offtune: no tokenizer.json in ${what} "${dir}"; using ${path}`);
    }
  }
  const tokenizer = await loadTokenizer(path);
  if (tokenizer.vocabSize > cfg.vocabSize) {
    throw new Error(`Tokenizer has ${tokenizer.vocabSize} ids but the model "${dir}" only ${cfg.vocabSize} (tokenizer "${path}")`);
  }
  return { tokenizer, path };
}

/**
 * Refuses a default fixture token stream (`fixtures/data/pretrain/*.bin`: ids
 * of {@link FIXTURE_TOKENIZER}) for a model whose tokenizer is another one
 * (`tokenizerPath`, not byte-identical to the fixture tokenizer): its ids
 * would stand for other words, and a calibration or perplexity on it would be
 * silently meaningless (a vocabulary as large as the fixture's raises no
 * other error).
 *
 * @param flag the flag that sets the stream, named in the message
 * @param stream the default stream's path
 * @throws Error naming the flag, the default and the model's tokenizer
 */
export async function refuseFixtureStreamFor(flag: string, stream: string, tokenizerPath: string): Promise<void> {
  if (tokenizerPath === FIXTURE_TOKENIZER) return;
  const [own, fixture] = await Promise.all([readFile(tokenizerPath), readFile(FIXTURE_TOKENIZER)]);
  if (own.equals(fixture)) return;
  throw new Error(
    `${flag} defaults to "${stream}", token ids of the fixture tokenizer, but the model's tokenizer is "${tokenizerPath}": ` +
      `pass ${flag} with a text file of your own (plain text or .jsonl of {"text": ...}, tokenized with the model's tokenizer)`,
  );
}
