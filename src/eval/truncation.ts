/**
 * The layout of one log-likelihood request (docs/METHOD.md §5), with
 * lm-eval-harness's left truncation: the one rule under both the scorer
 * (src/eval/loglikelihood.ts) and the tuning rows (src/train/mc_batches.ts),
 * so that training reads exactly the positions that scoring reads.
 *
 * The model reads `tokens[0 .. n−2]` (the last token is only a target); an
 * input longer than the model's `maxPositions` loses tokens from the *left*;
 * positions `start−1 .. n−2` of the input predict the continuation
 * `tokens[start ..]`. The continuation must fit with one token before it.
 * Rows of a batch are right-padded to the longest ({@link padRequests}); pads
 * are never read: attention is causal and positions count from 0 at the left.
 *
 * @module
 */
import type { LoglikelihoodRequest } from "./loglikelihood.ts";

/** A request after left truncation: the ids the model reads and the targets it predicts. */
export interface TruncatedRequest {
  /** Model input, the last `min(n − 1, maxPositions)` of `tokens[0 .. n−2]`. */
  input: Int32Array;
  /** Input position predicting the first continuation token. */
  from: number;
  /** The continuation ids `tokens[start ..]`, predicted by positions `from, from + 1, …`. */
  targets: Int32Array;
}

/**
 * Why a request cannot be laid out, for the caller to word: a start outside
 * `1 .. n−1`, a continuation of `length` tokens longer than the model's
 * positions, or the non-id `id` at index `at`.
 */
export type RequestFault =
  | { kind: "start"; start: number; tokens: number }
  | { kind: "continuation"; length: number; maxPositions: number }
  | { kind: "token"; at: number; id: number; vocabSize: number };

/**
 * Checks `request` against a model of `maxPositions` positions and
 * `vocabSize` ids and lays it out with left truncation (module notes).
 *
 * @param message words the error of a fault, naming the request as the caller knows it
 * @throws Error with `message(fault)` for a start out of range, a
 *   continuation that cannot fit, or an id that is not an integer below `vocabSize`
 */
export function truncateRequest(
  request: LoglikelihoodRequest,
  maxPositions: number,
  vocabSize: number,
  message: (fault: RequestFault) => string,
): TruncatedRequest {
  const n = request.tokens.length;
  const { start } = request;
  if (!Number.isInteger(start) || start < 1 || start >= n) throw new Error(message({ kind: "start", start, tokens: n }));
  if (n - start > maxPositions) throw new Error(message({ kind: "continuation", length: n - start, maxPositions }));
  const tokens = Int32Array.from(request.tokens);
  for (let i = 0; i < n; i++) {
    const id = request.tokens[i];
    if (!Number.isInteger(id) || tokens[i] < 0 || tokens[i] >= vocabSize) {
      throw new Error(message({ kind: "token", at: i, id, vocabSize }));
    }
  }
  const drop = Math.max(0, n - 1 - maxPositions);
  return { input: tokens.subarray(drop, n - 1), from: start - 1 - drop, targets: tokens.subarray(start, n) };
}

/** Truncated requests as one right-padded batch, with the flat positions and targets to read back. */
export interface PaddedBatch {
  /** Inputs `[rows, length]` row-major, right-padded. */
  ids: Int32Array;
  rows: number;
  length: number;
  /** Flat positions `b·length + t` that predict a target, `[N]`. */
  positions: Int32Array;
  /** The target each position predicts, `[N]`. */
  targets: Int32Array;
}

/**
 * Lays `requests` out as the rows of one batch, right-padded with `padId` to
 * the longest input: the one layout the scorer's batches and the tuning
 * batches share, so both read the same positions.
 *
 * @throws Error for an empty list
 */
export function padRequests(requests: readonly TruncatedRequest[], padId: number): PaddedBatch {
  const rows = requests.length;
  if (rows === 0) throw new Error("Cannot build an empty batch");
  let length = 0;
  let n = 0;
  for (const r of requests) {
    length = Math.max(length, r.input.length);
    n += r.targets.length;
  }
  const ids = new Int32Array(rows * length).fill(padId); // [B, T]
  const positions = new Int32Array(n); // [N]
  const targets = new Int32Array(n); // [N]
  let at = 0;
  requests.forEach((r, b) => {
    ids.set(r.input, b * length);
    for (let j = 0; j < r.targets.length; j++) {
      positions[at] = b * length + r.from + j;
      targets[at++] = r.targets[j];
    }
  });
  return { ids, rows, length, positions, targets };
}
