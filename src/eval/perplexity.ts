/**
 * Perplexity on held-out text (docs/METHOD.md §5), and the unigram reference it
 * is read against.
 *
 * The stream is cut into windows that each *predict* `ctx` new tokens and
 * never overlap in what they predict: window `w` reads tokens
 * `[w·ctx, (w+1)·ctx)` and predicts `[w·ctx + 1, (w+1)·ctx]` (the last one
 * shorter). Every token but the first (the stream's leading `</s>`) is
 * predicted exactly once; each prediction sees only the tokens of its own
 * window (no carried context), as in the trainer's validation windows.
 * `nll` is the mean negative log-likelihood per predicted token (nats) and
 * `ppl = exp(nll)`.
 *
 * Bits per byte make figures comparable across tokenizers: the summed NLL of
 * the predicted tokens in bits over the UTF-8 bytes they decode to (special
 * tokens such as the document separator `</s>` decode to no bytes),
 * `bpb = nll · tokens / (ln 2 · bytes)`.
 *
 * The unigram reference: token frequencies of a training stream with
 * add-one (Laplace) smoothing over the vocabulary, `p(w) = (c_w + 1)/(N + V)`,
 * scored on the same predicted tokens. A model that learned anything from
 * context beats it.
 *
 * @module
 */
import type { Tokenizer } from "../io/tokenizer.ts";
import type { ModelHandle } from "../records/records.ts";
import { type LoglikelihoodOptions, type LoglikelihoodRequest, scoreLoglikelihoods } from "./loglikelihood.ts";

/** A perplexity figure. */
export interface Perplexity {
  /** Mean negative log-likelihood per predicted token (nats). */
  nll: number;
  /** `exp(nll)`. */
  ppl: number;
  /** Tokens predicted. */
  tokens: number;
}

/**
 * The windows of `stream` as log-likelihood requests: each holds up to
 * `ctx + 1` tokens and scores all but its first.
 *
 * @throws Error for ctx < 1 or a stream of fewer than 2 tokens
 */
export function perplexityWindows(stream: ArrayLike<number>, ctx: number): LoglikelihoodRequest[] {
  if (!Number.isInteger(ctx) || ctx < 1) throw new Error(`Perplexity window length must be a positive integer, got ${ctx}`);
  if (stream.length < 2) throw new Error(`Perplexity needs at least 2 tokens, got ${stream.length}`);
  const out: LoglikelihoodRequest[] = [];
  for (let s = 0; s + 1 < stream.length; s += ctx) {
    const tokens = Array.from({ length: Math.min(ctx + 1, stream.length - s) }, (_, i) => stream[s + i]);
    out.push({ tokens, start: 1 });
  }
  return out;
}

/**
 * UTF-8 bytes of the text that `stream[1..]` (the predicted tokens,
 * {@link perplexityWindows}) decodes to, special tokens skipped: the
 * denominator of {@link bitsPerByte}.
 */
export function predictedBytes(stream: ArrayLike<number>, tokenizer: Pick<Tokenizer, "decode">): number {
  const predicted = Array.from({ length: Math.max(0, stream.length - 1) }, (_, i) => stream[i + 1]);
  return new TextEncoder().encode(tokenizer.decode(predicted, { skipSpecialTokens: true })).length;
}

/**
 * Bits per byte of a perplexity figure over `bytes` bytes of text (module
 * notes): the summed NLL in bits over the bytes.
 *
 * @throws Error when `bytes` is not positive
 */
export function bitsPerByte(p: Perplexity, bytes: number): number {
  if (!(bytes > 0)) throw new Error(`Bits per byte need text of at least one byte, got ${bytes}`);
  return (p.nll * p.tokens) / (Math.LN2 * bytes);
}

/** Options of {@link modelPerplexity}. */
export interface PerplexityOptions extends LoglikelihoodOptions {
  /** Tokens each window reads (default: the model's max positions). */
  ctx?: number;
}

/**
 * The model's perplexity on `stream` in non-overlapping windows (module notes).
 *
 * @throws Error when `ctx` exceeds the model's max positions
 */
export async function modelPerplexity(
  model: ModelHandle,
  stream: ArrayLike<number>,
  options: PerplexityOptions = {},
): Promise<Perplexity> {
  const ctx = options.ctx ?? model.cfg.maxPositions;
  if (ctx > model.cfg.maxPositions) {
    throw new Error(`Perplexity window ${ctx} exceeds the model's ${model.cfg.maxPositions} positions`);
  }
  const scores = await scoreLoglikelihoods(model, perplexityWindows(stream, ctx), options);
  let sum = 0;
  let tokens = 0;
  for (const s of scores) {
    sum -= s.logprob;
    tokens += s.tokens;
  }
  return { nll: sum / tokens, ppl: Math.exp(sum / tokens), tokens };
}

/**
 * Add-one unigram perplexity of `stream[1..]` under the token counts of
 * `train` over a `vocabSize` vocabulary (module notes).
 *
 * @throws Error for an id outside the vocabulary or a stream of fewer than 2 tokens
 */
export function unigramPerplexity(train: ArrayLike<number>, stream: ArrayLike<number>, vocabSize: number): Perplexity {
  if (stream.length < 2) throw new Error(`Perplexity needs at least 2 tokens, got ${stream.length}`);
  const counts = new Float64Array(vocabSize);
  for (let i = 0; i < train.length; i++) {
    const id = train[i];
    if (!(id >= 0 && id < vocabSize)) throw new Error(`Training token ${i} has id ${id}, outside the vocabulary of ${vocabSize}`);
    counts[id]++;
  }
  const logTotal = Math.log(train.length + vocabSize);
  let sum = 0;
  for (let i = 1; i < stream.length; i++) {
    const id = stream[i];
    if (!(id >= 0 && id < vocabSize)) throw new Error(`Token ${i} has id ${id}, outside the vocabulary of ${vocabSize}`);
    sum += logTotal - Math.log(counts[id] + 1);
  }
  const tokens = stream.length - 1;
  return { nll: sum / tokens, ppl: Math.exp(sum / tokens), tokens };
}
