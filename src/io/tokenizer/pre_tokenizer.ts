/**
 * Pre-tokenizers of a Hugging Face `tokenizer.json`: they cut text into the
 * words BPE sees. Supported: `ByteLevel` (GPT-2 regex split, optional prefix
 * space, byte-to-character mapping), `Split` (regex or literal pattern, the
 * five HF delimiter behaviours, `invert`) and `Sequence` of those, which
 * covers GPT-2, OPT, RoBERTa and the LLaMA-3 family.
 *
 * @module
 */
import { GPT2_SPLIT_PATTERN, toByteLevel } from "./byte_level.ts";

/** Cuts each piece into smaller pieces. */
export type PreTokenizer = (pieces: string[]) => string[];

/** Whether the ByteLevel step runs the GPT-2 regex (`use_regex`, default true). */
interface ByteLevelJson {
  type: "ByteLevel";
  add_prefix_space?: boolean;
  use_regex?: boolean;
}

type Behavior = "Removed" | "Isolated" | "MergedWithPrevious" | "MergedWithNext" | "Contiguous";
const BEHAVIORS: readonly string[] = ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"];

function escapeRegExp(literal: string): string {
  return literal.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/**
 * Compiles a pattern written for the Rust `onig`/`fancy-regex` engines as a
 * global Unicode JS RegExp. Scoped case-insensitive groups `(?i:…)`, which
 * older JS engines reject, are rewritten by listing both cases of each ASCII
 * letter (`[sS]`), which is what they mean for the ASCII contractions they
 * hold in the LLaMA-3 and Qwen patterns.
 */
export function compileOnigPattern(source: string): RegExp {
  try {
    return new RegExp(source, "gu");
  } catch (first) {
    if (!source.includes("(?i:")) {
      throw new Error(`cannot compile regex ${JSON.stringify(source)} (${(first as Error).message})`);
    }
  }
  let out = "";
  let i = 0;
  let depth = 0; // nesting inside (?i: groups, counting inner groups
  let inClass = false;
  while (i < source.length) {
    if (depth === 0 && source.startsWith("(?i:", i)) {
      out += "(?:";
      i += 4;
      depth = 1;
      continue;
    }
    const c = source[i];
    if (c === "\\") {
      const braced = /^\\[pPu]\{[^}]*\}/.exec(source.slice(i));
      const escape = braced ? braced[0] : source.slice(i, i + 2);
      out += escape;
      i += escape.length;
      continue;
    }
    if (depth > 0 && !inClass) {
      if (c === "(") depth++;
      if (c === ")") depth--;
    }
    if (c === "[" && !inClass) inClass = true;
    else if (c === "]" && inClass) inClass = false;
    const letter = depth > 0 && /[a-zA-Z]/.test(c);
    const both = c.toLowerCase() + c.toUpperCase();
    out += letter ? (inClass ? both : `[${both}]`) : c;
    i++;
  }
  try {
    return new RegExp(out, "gu");
  } catch (e) {
    throw new Error(`cannot compile regex ${JSON.stringify(source)} (${(e as Error).message})`);
  }
}

/**
 * Splits `text` at the matches of `pattern`, following HF's
 * `SplitDelimiterBehavior` fold rules exactly (tokenizers `normalizer.rs`).
 */
function splitBy(text: string, pattern: RegExp, behavior: Behavior, invert: boolean): string[] {
  const parts: { s: string; match: boolean }[] = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m[0] === "") continue;
    if (m.index > last) parts.push({ s: text.slice(last, m.index), match: invert });
    parts.push({ s: m[0], match: !invert });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push({ s: text.slice(last), match: invert });

  // MergedWithNext is MergedWithPrevious run from the end, as in HF.
  const reversed = behavior === "MergedWithNext";
  const out: string[] = [];
  let previousMatch = false;
  for (const { s, match } of reversed ? parts.reverse() : parts) {
    const mergeIntoLast = out.length > 0 && (
      ((behavior === "MergedWithPrevious" || behavior === "MergedWithNext") && match && !previousMatch) ||
      (behavior === "Contiguous" && match === previousMatch)
    );
    if (behavior === "Removed" && match) {
      // delimiters are dropped
    } else if (mergeIntoLast) {
      out[out.length - 1] = reversed ? s + out[out.length - 1] : out[out.length - 1] + s;
    } else {
      out.push(s);
    }
    previousMatch = match;
  }
  return reversed ? out.reverse() : out;
}

/** The ByteLevel step: prefix space, GPT-2 regex split, byte-to-character mapping. */
function byteLevel(json: ByteLevelJson): PreTokenizer {
  const addPrefixSpace = json.add_prefix_space === true;
  const useRegex = json.use_regex !== false;
  const pattern = new RegExp(GPT2_SPLIT_PATTERN, "gu");
  return (pieces) => {
    const out: string[] = [];
    for (let piece of pieces) {
      if (addPrefixSpace && !piece.startsWith(" ")) piece = " " + piece;
      if (useRegex) {
        for (const m of piece.matchAll(pattern)) out.push(toByteLevel(m[0]));
      } else if (piece !== "") {
        out.push(toByteLevel(piece));
      }
    }
    return out;
  };
}

/**
 * Builds the pre-tokenizer described by `tokenizer.json`'s `pre_tokenizer`
 * (null means none: the text is one piece).
 *
 * Throws an Error naming the unsupported or malformed step.
 */
export function createPreTokenizer(json: unknown): PreTokenizer {
  if (json === null || json === undefined) return (pieces) => pieces;
  const spec = json as Record<string, unknown>;
  switch (spec.type) {
    case "ByteLevel":
      return byteLevel(spec as unknown as ByteLevelJson);
    case "Sequence": {
      const steps = (spec.pretokenizers as unknown[] | undefined ?? []).map((s) => createPreTokenizer(s));
      return (pieces) => steps.reduce((acc, step) => step(acc), pieces);
    }
    case "Split": {
      const pattern = spec.pattern as { Regex?: string; String?: string } | undefined;
      const behavior = spec.behavior as string;
      if (!BEHAVIORS.includes(behavior)) {
        throw new Error(`Split pre-tokenizer has unknown behavior ${JSON.stringify(behavior)}`);
      }
      let regex: RegExp;
      if (typeof pattern?.Regex === "string") regex = compileOnigPattern(pattern.Regex);
      else if (typeof pattern?.String === "string") regex = new RegExp(escapeRegExp(pattern.String), "gu");
      else throw new Error(`Split pre-tokenizer needs a pattern {"Regex": …} or {"String": …}`);
      const invert = spec.invert === true;
      return (pieces) => pieces.flatMap((p) => splitBy(p, regex, behavior as Behavior, invert));
    }
    default:
      throw new Error(
        `unsupported pre_tokenizer type ${JSON.stringify(spec.type)} (supported: ByteLevel, Split, Sequence)`,
      );
  }
}
