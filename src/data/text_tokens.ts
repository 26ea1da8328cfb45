/**
 * Token ids of a data file in the forms the verbs accept for calibration
 * text (`build-emulator --calibration`) and perplexity data (`eval
 * --ppl-data`), so a model owner with a model of their own passes their own
 * text and it is encoded with their model's tokenizer:
 *
 * - `.bin`: a Uint16 token stream (token_stream.ts), read as is;
 * - `.jsonl`: one document a line, `{"text": "..."}`, each encoded and
 *   preceded by the tokenizer's EOS id when it has one (the separator of
 *   the pretraining stream, token_stream.ts);
 * - any other name: UTF-8 text, encoded as one document.
 *
 * Text is encoded without the post-processor's special tokens. Every id is
 * checked against the model's vocabulary, so a token stream of another
 * tokenizer fails here, naming the file, and not deep inside a forward pass.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import type { Tokenizer } from "../io/tokenizer.ts";
import { parseJsonlLines } from "./files.ts";
import { readTokenStream } from "./token_stream.ts";

/**
 * The token ids of `file` (module notes). `tokenizer` is called only for a
 * text file, so a `.bin` stream needs none.
 *
 * @param what names the file in errors, e.g. `calibration file`
 * @throws Error naming the file when it cannot be read, a jsonl line has no
 *   string `text`, it holds no tokens, or an id is not below `vocabSize`
 */
export async function readTokensOfFile(
  file: string,
  what: string,
  vocabSize: number,
  tokenizer: () => Promise<Tokenizer>,
): Promise<ArrayLike<number>> {
  const fail = (reason: string): never => {
    throw new Error(`Cannot read ${what} "${file}": ${reason}`);
  };
  const bytes = await readFile(file).catch((e) =>
    fail((e as { code?: string }).code === "ENOENT" ? "file does not exist" : (e as Error).message)
  );
  let ids: ArrayLike<number>;
  if (file.endsWith(".bin")) {
    ids = await Promise.resolve().then(() => readTokenStream(file)).catch((e) => fail((e as Error).message));
  } else {
    const text = new TextDecoder().decode(bytes);
    const tok = await tokenizer();
    const encode = (s: string) => tok.encode(s, { addSpecialTokens: false });
    if (file.endsWith(".jsonl")) {
      const out: number[] = [];
      for (const { line, value } of parseJsonlLines(text, file)) {
        const doc = (value as { text?: unknown } | null)?.text;
        if (typeof doc !== "string") fail(`line ${line} has no string "text"`);
        if (tok.eosId !== undefined) out.push(tok.eosId);
        for (const id of encode(doc as string)) out.push(id);
      }
      ids = out;
    } else {
      ids = encode(text);
    }
  }
  if (ids.length === 0) fail("it holds no tokens");
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] < vocabSize)) {
      fail(`token ${i} has id ${ids[i]}, outside the model's vocabulary of ${vocabSize} (a token stream of another tokenizer? pass text instead)`);
    }
  }
  return ids;
}
