/**
 * Fine-tuning batches from multiple-choice items (docs/METHOD.md §1: the data
 * owner tunes on its task). A training item is the evaluator's request for
 * its gold choice (src/eval/multiple_choice.ts `encodePair`: BOS, context
 * tokens, then the continuation tokens split off `encode(context + choice)`),
 * and the loss is the mean negative log-likelihood of the continuation
 * tokens alone: training raises exactly the log-likelihood §5's scorer
 * reads.
 *
 * Each row is laid out as the scorer lays out a request, by the same
 * function (src/eval/truncation.ts): the model reads `tokens[0 .. n−2]` (the last
 * token is only a target), an input longer than the model's positions loses
 * tokens from the left, and the positions `start−1 .. n−2` predict the
 * continuation. Rows are right-padded to the batch's longest; pads are never
 * read: attention is causal and positions count from 0 at the left, so no
 * real position sees a pad.
 *
 * Each epoch visits every item once, in an order drawn from the run's seed
 * and the epoch number alone, so a run resumed at any step replays exactly
 * the batches an uninterrupted run would have seen.
 *
 * @module
 */
import type { McItem } from "../data/tasks/types.ts";
import type { LoglikelihoodRequest } from "../eval/loglikelihood.ts";
import { encodePair, type PairEncoder } from "../eval/multiple_choice.ts";
import { type PaddedBatch, padRequests, type TruncatedRequest, truncateRequest } from "../eval/truncation.ts";
import { Prng } from "./prng.ts";

/** A training example: the scorer's request for an item's gold choice, named by the item. */
export interface TuneExample extends LoglikelihoodRequest {
  /** The item's id. */
  id: string;
}

/**
 * The training examples of `items`: each item's context with its gold
 * choice, encoded exactly as the scorer encodes that choice (`encodePair`,
 * BOS first).
 *
 * @throws Error naming the item when its gold choice cannot be encoded
 */
export function goldExamples(items: readonly McItem[], tokenizer: PairEncoder): TuneExample[] {
  return items.map((item) => {
    try {
      return { id: item.id, ...encodePair(tokenizer, item.context, item.choices[item.gold]) };
    } catch (e) {
      throw new Error(`Item "${item.id}": ${(e as Error).message}`, { cause: e });
    }
  });
}

/** A training row after left truncation: the ids the model reads and the answer it predicts (as the scorer's request). */
export type AnswerRow = TruncatedRequest;

/** A padded batch of {@link AnswerRow}s, laid out as the scorer's batches (src/eval/truncation.ts `padRequests`). */
export type AnswerBatch = PaddedBatch;

/**
 * The training row of `request` for a model of `maxPositions` positions and
 * `vocabSize` ids (truncation as the scorer's: src/eval/truncation.ts).
 *
 * @param where names the item in errors (e.g. `Item "x-train-0017"`)
 * @throws Error when the answer does not start after a context token, holds
 *   no token, cannot fit with one context token, or an id is out of range
 */
export function answerRow(
  request: LoglikelihoodRequest,
  maxPositions: number,
  vocabSize: number,
  where: string,
): AnswerRow {
  return truncateRequest(request, maxPositions, vocabSize, (fault) => {
    switch (fault.kind) {
      case "start":
        return `${where}: the answer starts at token ${fault.start} of ${fault.tokens}; need a context token before it and an answer token`;
      case "continuation":
        return `${where}: the answer has ${fault.length} tokens, more than the model's ${fault.maxPositions} positions`;
      case "token":
        return `${where}: token ${fault.at} is ${fault.id}, outside the vocabulary of ${fault.vocabSize}`;
    }
  });
}

/** Rows `order` of `rows`, right-padded with `padId` to the longest input. */
export function padBatch(rows: readonly AnswerRow[], order: ArrayLike<number>, padId: number): AnswerBatch {
  return padRequests(Array.from(order, (i) => rows[i]), padId);
}

/** Epoch `epoch`'s visiting order of `count` items: a seeded Fisher-Yates shuffle. */
export function epochOrder(count: number, seed: number, epoch: number): Int32Array {
  const prng = new Prng((seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
  const order = Int32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = prng.below(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Optimizer steps per epoch: `⌈count / batch⌉` (the last batch may be short). */
export function stepsPerEpoch(count: number, batch: number): number {
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`Batch size must be a positive integer, got ${batch}`);
  if (count < 1) throw new Error("No training items");
  return Math.ceil(count / batch);
}

/**
 * The micro-batches of 0-based optimizer step `step`: epoch `⌊step / S⌋`,
 * that epoch's items `[k·batch, (k+1)·batch)` with `k = step mod S`, cut in
 * order into runs of `microBatch` items (the last may be shorter), each
 * padded to its own longest row. The cut depends on the settings alone,
 * never on the threads computing it, so a step's gradient is the same bits
 * for any worker count (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * @throws Error when `microBatch` is not a positive integer
 */
export function microBatchesAt(
  rows: readonly AnswerRow[],
  step: number,
  batch: number,
  microBatch: number,
  seed: number,
  padId: number,
): AnswerBatch[] {
  if (!Number.isInteger(microBatch) || microBatch < 1) throw new Error(`Micro-batch size must be a positive integer, got ${microBatch}`);
  const perEpoch = stepsPerEpoch(rows.length, batch);
  const k = step % perEpoch;
  const order = epochOrder(rows.length, seed, Math.floor(step / perEpoch));
  const items = order.subarray(k * batch, Math.min((k + 1) * batch, rows.length));
  const out: AnswerBatch[] = [];
  for (let from = 0; from < items.length; from += microBatch) out.push(padBatch(rows, items.subarray(from, from + microBatch), padId));
  return out;
}
