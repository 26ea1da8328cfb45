/**
 * Zero-shot multiple choice by log-likelihood (docs/METHOD.md §5), following
 * lm-eval-harness's `multiple_choice` output type:
 *
 * - Each choice is a `loglikelihood` request `(context, continuation)` with
 *   the continuation the choice string **as stored**: the task files
 *   (fixtures/data/README.md) already begin every choice with a space, so no
 *   delimiter is added. As lm-eval's `_encode_pair` does, trailing
 *   whitespace of the context is moved to the front of the continuation.
 * - Tokens (lm-eval's split): `whole = encode(context + continuation)`,
 *   `ctx = encode(context)`, continuation tokens `whole[len(ctx):]`, so a
 *   BPE merge across the boundary cannot leave the context encoded one way
 *   and the scored sequence another. On the fixture tasks `encode(context)`
 *   is a prefix of `encode(context + choice)` for every choice of every
 *   split (checked: 0 mismatches in 29,800 requests), since a choice that starts with
 *   a space starts a new GPT-2 pre-token.
 * - A BOS id is put first (`bos`, default true): HF's OPT tokenizer does it,
 *   it is lm-eval's `add_bos_token=True`, and offtune's pretraining stream
 *   puts `</s>` before every document, so the model has seen text start
 *   that way. Left truncation (see loglikelihood.ts) may drop it.
 * - `acc` picks `argmax Σ logprob`; `acc_norm` picks
 *   `argmax Σ logprob / len(continuation)`, the length in **characters**
 *   (Unicode code points, Python's `len`) as lm-eval's
 *   `completion_len = [len(choice) for choice in choices]`. Here the
 *   length counts the choice's leading space, since it is part of the
 *   stored choice. Ties go to the first choice (numpy's argmax).
 *
 * @module
 */
import type { McItem } from "../data/tasks/types.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import type { ModelHandle } from "../records/records.ts";
import { type LoglikelihoodOptions, type LoglikelihoodRequest, scoreLoglikelihoods } from "./loglikelihood.ts";
import { aboveChance, type AccuracyStats, accuracyStats, chanceLevel } from "./stats.ts";

/** What encoding needs from a tokenizer. */
export type PairEncoder = Pick<Tokenizer, "encode" | "bosId">;

/** Options of {@link encodePair}. */
export interface EncodeOptions {
  /** Put the tokenizer's BOS id first (default true). */
  bos?: boolean;
}

/**
 * The request for `continuation` given `context` (lm-eval `_encode_pair`;
 * see the module notes).
 *
 * @throws Error when a BOS is asked for and the tokenizer has none, or the
 *   continuation adds no token
 */
export function encodePair(
  tokenizer: PairEncoder,
  context: string,
  continuation: string,
  options: EncodeOptions = {},
): LoglikelihoodRequest {
  const spaces = context.length - context.trimEnd().length;
  const ctx = context.slice(0, context.length - spaces);
  const cont = context.slice(context.length - spaces) + continuation;
  const prefix: number[] = [];
  if (options.bos ?? true) {
    if (tokenizer.bosId === undefined) throw new Error("The tokenizer names no BOS token; encode without one (bos: false)");
    prefix.push(tokenizer.bosId);
  }
  const whole = [...prefix, ...tokenizer.encode(ctx + cont, { addSpecialTokens: false })];
  const start = prefix.length + tokenizer.encode(ctx, { addSpecialTokens: false }).length;
  if (whole.length <= start) {
    throw new Error(`Continuation ${JSON.stringify(continuation)} adds no token to context ${JSON.stringify(context.slice(-40))}`);
  }
  return { tokens: whole, start };
}

/** Characters of a string as Python's `len` counts them (code points). */
export function charLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Index of the first maximum (numpy `argmax`). */
function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** The scored item: per-choice log-likelihoods and both picks. */
export interface McItemResult {
  /** The item's id. */
  id: string;
  /** Index of the correct choice. */
  gold: number;
  /** `Σ log p(choice tokens | context)` per choice. */
  logprobs: number[];
  /** Continuation length in characters per choice (acc_norm's divisor). */
  lengths: number[];
  /** `argmax logprobs` (acc). */
  pred: number;
  /** `argmax logprobs / lengths` (acc_norm). */
  predNorm: number;
}

/**
 * Both picks of one item from its choices' log-likelihoods and lengths.
 *
 * @throws Error when the arrays differ in length or a length is not positive
 */
export function pickChoices(logprobs: readonly number[], lengths: readonly number[]): { pred: number; predNorm: number } {
  if (logprobs.length !== lengths.length || logprobs.length === 0) {
    throw new Error(`Got ${logprobs.length} log-likelihoods for ${lengths.length} choice lengths`);
  }
  if (lengths.some((l) => !(l > 0))) throw new Error(`Choice lengths must be positive, got [${lengths.join(", ")}]`);
  return { pred: argmax(logprobs), predNorm: argmax(logprobs.map((l, i) => l / lengths[i])) };
}

/** Options of {@link scoreMultipleChoice}. */
export interface McOptions extends LoglikelihoodOptions, EncodeOptions {}

/**
 * Scores every choice of every item with `model` and returns both picks per
 * item, in item order. All items' requests go through one batched pass.
 *
 * @throws Error naming the item for a gold index out of range or a choice
 *   that cannot be encoded
 */
export async function scoreMultipleChoice(
  model: ModelHandle,
  tokenizer: PairEncoder,
  items: readonly McItem[],
  options: McOptions = {},
): Promise<McItemResult[]> {
  const requests: LoglikelihoodRequest[] = [];
  for (const item of items) {
    if (!Number.isInteger(item.gold) || item.gold < 0 || item.gold >= item.choices.length) {
      throw new Error(`Item "${item.id}" has gold ${item.gold} for ${item.choices.length} choices`);
    }
    for (const choice of item.choices) {
      try {
        requests.push(encodePair(tokenizer, item.context, choice, options));
      } catch (e) {
        throw new Error(`Item "${item.id}": ${(e as Error).message}`, { cause: e });
      }
    }
  }
  const scores = await scoreLoglikelihoods(model, requests, options);
  let at = 0;
  return items.map((item) => {
    const logprobs = item.choices.map(() => scores[at++].logprob);
    const lengths = item.choices.map((c) => charLength(c));
    return { id: item.id, gold: item.gold, logprobs, lengths, ...pickChoices(logprobs, lengths) };
  });
}

/** A task's scores: lm-eval's `acc` and `acc_norm` with intervals, and chance. */
export interface McSummary {
  /** Items scored. */
  n: number;
  /** Accuracy by summed log-likelihood, with its interval. */
  acc: AccuracyStats;
  /** Accuracy by length-normalised log-likelihood, with its interval. */
  accNorm: AccuracyStats;
  /** Mean of 1/k over items. */
  chance: number;
  /** Whether each interval lies wholly above chance. */
  aboveChance: boolean;
  /** Whether the `accNorm` interval lies wholly above chance. */
  aboveChanceNorm: boolean;
}

/** Summarises scored items (see stats.ts for the interval and chance definitions). */
export function summarizeMultipleChoice(results: readonly McItemResult[]): McSummary {
  const acc = accuracyStats(results.map((r) => (r.pred === r.gold ? 1 : 0)));
  const accNorm = accuracyStats(results.map((r) => (r.predNorm === r.gold ? 1 : 0)));
  const chance = chanceLevel(results.map((r) => r.logprobs.length));
  return {
    n: results.length,
    acc,
    accNorm,
    chance,
    aboveChance: aboveChance(acc, chance),
    aboveChanceNorm: aboveChance(accNorm, chance),
  };
}
