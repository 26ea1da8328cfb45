/**
 * Byte-level BPE tokenizers from a Hugging Face `tokenizer.json` (GPT-2, OPT,
 * RoBERTa, LLaMA-3 style), for calibration text and task data (docs/DESIGN.md
 * "The shape in one picture": calibration text, tokenized).
 *
 * Encoding runs HF's pipeline: added tokens are cut out first, then each
 * remaining stretch is normalized, pre-tokenized (`tokenizer/pre_tokenizer.ts`),
 * split by BPE (`tokenizer/bpe.ts`), and the post-processor adds special
 * tokens. Decoding maps tokens back through the ByteLevel decoder.
 *
 * Supported: model `BPE` (no subword prefix/suffix, no byte fallback, no
 * dropout); normalizers NFC/NFD/NFKC/NFKD/Lowercase and Sequence; the
 * pre-tokenizers listed in `pre_tokenizer.ts`; post-processors ByteLevel,
 * TemplateProcessing, RobertaProcessing, BertProcessing and Sequence; decoder
 * ByteLevel. Anything else is refused with an error naming it.
 *
 * One deliberate difference from HF: a character with no vocab entry and no
 * `unk_token` raises an error instead of being dropped silently.
 *
 * @module
 */
import { access, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import { type AddedToken, createAddedTokenSplitter, parseAddedTokens } from "./tokenizer/added_tokens.ts";
import { type BpeJson, createBpe } from "./tokenizer/bpe.ts";
import { fromByteLevel } from "./tokenizer/byte_level.ts";
import { createPreTokenizer } from "./tokenizer/pre_tokenizer.ts";

/** A loaded tokenizer: text to ids and back. */
export interface Tokenizer {
  /** One more than the largest id (model vocab and added tokens). */
  vocabSize: number;
  /** Token ids of `text`; `addSpecialTokens` (default true) runs the post-processor (e.g. OPT's leading `</s>`). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; `skipSpecialTokens` (default false) drops added tokens marked special. */
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The id of a token string, if in the vocabulary. */
  tokenToId(t: string): number | undefined;
  /** The token string of an id, if in the vocabulary. */
  idToToken(id: number): string | undefined;
  /** Beginning/end-of-sequence and padding ids where the files identify them (see {@link loadTokenizer}). */
  bosId?: number;
  /** End-of-sequence id, where the files identify one. */
  eosId?: number;
  /** Padding id, where the files identify one. */
  padId?: number;
}

type Processor = { prefix: number[]; suffix: number[] };

function asObject(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== "object" || x === null || Array.isArray(x)) throw new Error(`${what} is not an object`);
  return x as Record<string, unknown>;
}

function createNormalizer(json: unknown): (text: string) => string {
  if (json === null || json === undefined) return (t) => t;
  const spec = asObject(json, "normalizer");
  switch (spec.type) {
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD": {
      const form = spec.type;
      return (t) => t.normalize(form);
    }
    case "Lowercase":
      return (t) => t.toLowerCase();
    case "Sequence": {
      const steps = ((spec.normalizers ?? []) as unknown[]).map(createNormalizer);
      return (t) => steps.reduce((acc, step) => step(acc), t);
    }
    default:
      throw new Error(`unsupported normalizer type ${JSON.stringify(spec.type)}`);
  }
}

/**
 * The special ids the post-processor puts before and after a single sequence.
 * `TemplateProcessing` names them in its `single` template; Roberta/Bert
 * processing wrap the sequence in `cls … sep`; ByteLevel adds none.
 */
function createProcessor(json: unknown, tokenToId: (t: string) => number | undefined): Processor {
  const none: Processor = { prefix: [], suffix: [] };
  if (json === null || json === undefined) return none;
  const spec = asObject(json, "post_processor");
  switch (spec.type) {
    case "ByteLevel":
      return none;
    case "TemplateProcessing": {
      const special = asObject(spec.special_tokens ?? {}, "TemplateProcessing special_tokens");
      const out: Processor = { prefix: [], suffix: [] };
      let seen = false;
      for (const piece of (spec.single ?? []) as Record<string, { id: string }>[]) {
        if (piece.Sequence) {
          if (piece.Sequence.id !== "A") throw new Error(`TemplateProcessing single template uses sequence "${piece.Sequence.id}"`);
          seen = true;
        } else if (piece.SpecialToken) {
          const name = piece.SpecialToken.id;
          const entry = special[name] as { ids?: unknown } | undefined;
          const ids = entry?.ids ?? (tokenToId(name) === undefined ? undefined : [tokenToId(name)]);
          if (!Array.isArray(ids) || !ids.every(Number.isSafeInteger)) {
            throw new Error(`TemplateProcessing special token ${JSON.stringify(name)} has no ids`);
          }
          (seen ? out.suffix : out.prefix).push(...(ids as number[]));
        } else {
          throw new Error(`TemplateProcessing template piece ${JSON.stringify(piece)} is neither Sequence nor SpecialToken`);
        }
      }
      if (!seen) throw new Error("TemplateProcessing single template has no sequence $A");
      return out;
    }
    case "RobertaProcessing":
    case "BertProcessing": {
      const cls = spec.cls as [string, number] | undefined;
      const sep = spec.sep as [string, number] | undefined;
      if (!Array.isArray(cls) || !Array.isArray(sep) || !Number.isSafeInteger(cls[1]) || !Number.isSafeInteger(sep[1])) {
        throw new Error(`${spec.type} needs "cls" and "sep" as [token, id]`);
      }
      return { prefix: [cls[1]], suffix: [sep[1]] };
    }
    case "Sequence": {
      const parts = ((spec.processors ?? []) as unknown[]).map((p) => createProcessor(p, tokenToId));
      return {
        prefix: parts.flatMap((p) => p.prefix),
        suffix: parts.flatMap((p) => p.suffix),
      };
    }
    default:
      throw new Error(`unsupported post_processor type ${JSON.stringify(spec.type)}`);
  }
}

/** Conventional names, used when neither the post-processor nor tokenizer_config.json says. */
const BOS_NAMES = ["<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"];
const EOS_NAMES = ["</s>", "<|end_of_text|>", "<|endoftext|>"];
const PAD_NAMES = ["<pad>", "<|pad|>", "[PAD]", "<|padding|>"];

function firstKnown(names: string[], tokenToId: (t: string) => number | undefined): number | undefined {
  for (const n of names) {
    const id = tokenToId(n);
    if (id !== undefined) return id;
  }
  return undefined;
}

function buildTokenizer(json: unknown, source: string): Tokenizer {
  const root = asObject(json, "the file");
  const model = asObject(root.model, "model");
  if (model.type !== "BPE") {
    throw new Error(`unsupported model type ${JSON.stringify(model.type)} (supported: BPE)`);
  }
  if (model.continuing_subword_prefix || model.end_of_word_suffix) {
    throw new Error("BPE continuing_subword_prefix and end_of_word_suffix are not supported (byte-level BPE has none)");
  }
  if (model.byte_fallback === true) throw new Error("BPE byte_fallback is not supported (byte-level BPE needs none)");
  if (typeof model.dropout === "number" && model.dropout > 0) throw new Error("BPE dropout is not supported");
  asObject(model.vocab, "model.vocab");
  if (!Array.isArray(model.merges)) throw new Error("model.merges is not an array");
  const bpe = createBpe(model as unknown as BpeJson, source);

  const added = parseAddedTokens(root.added_tokens);
  const addedByContent = new Map<string, AddedToken>(added.map((t) => [t.content, t]));
  const idToTokenTable: string[] = [];
  for (const [token, id] of bpe.vocab) idToTokenTable[id] = token;
  for (const t of added) idToTokenTable[t.id] = t.content;
  const specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
  const tokenBytes: Uint8Array[] = []; // decode cache: id -> UTF-8 bytes

  const tokenToId = (t: string) => addedByContent.get(t)?.id ?? bpe.vocab.get(t);
  const splitAdded = createAddedTokenSplitter(added);
  const normalize = createNormalizer(root.normalizer);
  const preTokenize = createPreTokenizer(root.pre_tokenizer);
  const processor = createProcessor(root.post_processor, tokenToId);
  const decoder = root.decoder as { type?: unknown } | null | undefined;
  if (decoder?.type !== "ByteLevel") {
    throw new Error(`unsupported decoder ${JSON.stringify(decoder?.type ?? null)} (supported: ByteLevel)`);
  }

  return {
    vocabSize: idToTokenTable.length,
    bosId: processor.prefix[0] ?? firstKnown(BOS_NAMES, tokenToId),
    eosId: processor.suffix.at(-1) ?? firstKnown(EOS_NAMES, tokenToId),
    padId: firstKnown(PAD_NAMES, tokenToId),
    tokenToId,
    idToToken: (id) => idToTokenTable[id],
    encode(text, options = {}) {
      const ids: number[] = [];
      for (const segment of splitAdded(text)) {
        if ("id" in segment) {
          ids.push(segment.id);
          continue;
        }
        for (const word of preTokenize([normalize(segment.text)])) {
          for (const id of bpe.encodeWord(word)) ids.push(id);
        }
      }
      if (options.addSpecialTokens === false) return ids;
      return [...processor.prefix, ...ids, ...processor.suffix];
    },
    decode(ids, options = {}) {
      const chunks: Uint8Array[] = [];
      let length = 0;
      for (const id of ids) {
        const token = idToTokenTable[id];
        if (token === undefined) {
          throw new Error(`Cannot decode with tokenizer "${source}": id ${id} is not in the vocabulary (size ${idToTokenTable.length})`);
        }
        if (options.skipSpecialTokens && specialIds.has(id)) continue;
        const bytes = tokenBytes[id] ??= fromByteLevel(token);
        chunks.push(bytes);
        length += bytes.length;
      }
      // One UTF-8 decode of all bytes: a character may span tokens; invalid bytes become U+FFFD, as in HF.
      const all = new Uint8Array(length);
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return new TextDecoder("utf-8").decode(all);
    },
  };
}

/**
 * Builds a tokenizer from parsed `tokenizer.json` content.
 *
 * bos/eos come from the post-processor's template (the special token before
 * / after the sequence), else from conventional names (`<s>`, `</s>`,
 * `<|endoftext|>`, …); pad from conventional names.
 *
 * @param source the file name, for error messages
 * @throws CheckpointError naming `source` for an unsupported or malformed file
 */
export function parseTokenizer(json: unknown, source = "tokenizer.json"): Tokenizer {
  try {
    return buildTokenizer(json, source);
  } catch (e) {
    throw new CheckpointError(source, `Cannot load tokenizer "${source}": ${(e as Error).message}`, { cause: e });
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new CheckpointError(path, `Cannot load tokenizer "${path}": ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `Cannot load tokenizer "${path}": invalid JSON (${(e as Error).message})`, {
      cause: e,
    });
  }
}

/** The id a `tokenizer_config.json` entry (`"</s>"` or `{"content": "</s>"}`) names. */
function configuredId(entry: unknown, tokenizer: Tokenizer): number | undefined {
  const content = typeof entry === "string" ? entry : (entry as { content?: unknown } | null)?.content;
  return typeof content === "string" ? tokenizer.tokenToId(content) : undefined;
}

/**
 * Loads a `tokenizer.json`. If a `tokenizer_config.json` sits beside it, its
 * `bos_token`, `eos_token` and `pad_token` set bosId/eosId/padId (it is where
 * HF keeps them: OPT's bos is `</s>`, not `<s>`).
 *
 * @throws CheckpointError naming the path for a missing file, invalid JSON or
 *   an unsupported tokenizer
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  const tokenizer = parseTokenizer(await readJson(path), path);
  const configPath = join(dirname(path), "tokenizer_config.json");
  let config: Record<string, unknown>;
  try {
    config = asObject(JSON.parse(await readFile(configPath, "utf8")), configPath);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return tokenizer;
    throw new CheckpointError(configPath, `Cannot load tokenizer config "${configPath}": ${(e as Error).message}`, {
      cause: e,
    });
  }
  return {
    ...tokenizer,
    bosId: configuredId(config.bos_token, tokenizer) ?? tokenizer.bosId,
    eosId: configuredId(config.eos_token, tokenizer) ?? tokenizer.eosId,
    padId: configuredId(config.pad_token, tokenizer) ?? tokenizer.padId,
  };
}

/** The tokenizer's file name in a Hugging Face model directory and in an offtune package. */
export const TOKENIZER_FILE = "tokenizer.json";

/** The file beside {@link TOKENIZER_FILE} that names its special tokens ({@link loadTokenizer}). */
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";

/**
 * `dir`'s own tokenizer.json, or undefined when it has none: the tokenizer a
 * package or checkpoint carries (docs/SHARDS.md), so that whoever receives it
 * encodes text as the model owner did.
 */
export async function ownTokenizer(dir: string): Promise<string | undefined> {
  const path = join(dir, TOKENIZER_FILE);
  return (await access(path).then(() => true, () => false)) ? path : undefined;
}

/**
 * Copies the tokenizer `tokenizerJson` into directory `dir` as tokenizer.json,
 * with the tokenizer_config.json beside it when there is one; each file is
 * written atomically (`dir` is usually a package's temporary directory).
 *
 * @throws CheckpointError naming the file when it cannot be read
 */
export async function copyTokenizerFiles(tokenizerJson: string, dir: string): Promise<void> {
  const config = join(dirname(tokenizerJson), TOKENIZER_CONFIG_FILE);
  const read = (path: string) =>
    readFile(path).catch((e) => {
      throw new CheckpointError(path, `Cannot read tokenizer file "${path}": ${(e as { code?: string }).code === "ENOENT" ? "file does not exist" : (e as Error).message}`, { cause: e });
    });
  await writeFileAtomic(join(dir, TOKENIZER_FILE), await read(tokenizerJson));
  if (await access(config).then(() => true, () => false)) {
    await writeFileAtomic(join(dir, TOKENIZER_CONFIG_FILE), await read(config));
  }
}
