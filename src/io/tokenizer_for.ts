/**
 * The tokenizer lookup every verb that turns text into a model's ids shares
 * (eval, tune, full-ft, plug-in, build-emulator): `--tokenizer` when given,
 * else `tokenizer.json` in the model (or package) directory, else the
 * fixture tokenizer the offtune models are trained with (a notice says so).
 *
 * @module
 */
import { access } from "node:fs/promises";
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
