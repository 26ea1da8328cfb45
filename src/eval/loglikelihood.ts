/**
 * Batched log-likelihood of continuations (docs/METHOD.md §5): the one forward
 * engine under multiple-choice scoring and perplexity, in the manner of
 * lm-eval-harness's `loglikelihood` requests.
 *
 * A request is a token sequence and the index where its continuation
 * starts; its score is `Σ_{t ≥ start} log p(tokens[t] | tokens[< t])`. The
 * model reads `tokens[0 .. n-2]` (the last token is only a target).
 *
 * Choices made here:
 * - **Truncation** (as lm-eval, src/eval/truncation.ts): a request whose
 *   input (`n − 1` tokens) exceeds the model's `maxPositions` loses tokens
 *   from the *left*; the continuation must still fit with one token before
 *   it, else it is an error.
 * - **Batching**: requests are sorted by length (longest first, as lm-eval
 *   does) and grouped so that rows × padded length stays under
 *   `batchTokens`; shorter rows are right-padded with `padId`. Right padding
 *   is harmless for a causal model: a real position attends only to earlier
 *   positions, and positions count from 0 at the left, so pad tokens never
 *   reach a position that is read.
 * - **Head on the scored positions only**: the final hidden states of the
 *   positions that predict continuation tokens are gathered before the head
 *   (`[N, d]` instead of `[B, T, d]`), which needs the head to act position by
 *   position (final norm + LM head: true of every registered architecture).
 * - **Residency**: `"resident"` loads every block once and runs each batch
 *   through the whole stack (fast; the model must fit in memory).
 *   `"streaming"` embeds a wave of batches (up to `waveTokens` tokens), then
 *   runs it block by block with one block resident, like the calibration
 *   forward (docs/DESIGN.md "Scale"): memory is one block plus the wave's hidden
 *   states, at the cost of re-reading each block once per wave.
 * - **Threads**: with a scoring pool (`pool`, src/eval/scoring_pool.ts) each
 *   batch, made as above whatever the thread count, is scored whole by one
 *   thread with {@link batchLogprobs}, and its scores land at its requests'
 *   indices, so the results are the same bits for any count.
 * - Sums accumulate in float64 on the host from float32 log-probabilities.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { WeightMap } from "../model/types.ts";
import type { ModelHandle } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { type PaddedBatch, padRequests, type TruncatedRequest, truncateRequest } from "./truncation.ts";

/** One scoring request: `tokens[start..]` is the continuation scored given `tokens[..start)`. */
export interface LoglikelihoodRequest {
  /** Context then continuation, as token ids. */
  tokens: ArrayLike<number>;
  /** Index of the first continuation token; at least 1 (a first token has nothing to condition on). */
  start: number;
}

/** The score of one request. */
export interface LoglikelihoodResult {
  /** `Σ log p(continuation token | prefix)` over the (possibly truncated) request. */
  logprob: number;
  /** Continuation tokens scored. */
  tokens: number;
}

/** What scores a padded batch on other threads: a scoring pool (src/eval/scoring_pool.ts; docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface BatchScorer {
  /** The log-probabilities `[N]` of the batch's targets ({@link batchLogprobs}). */
  score(batch: PaddedBatch): Promise<Float32Array>;
}

/** Whether all blocks stay loaded, or one block at a time is (see the module notes). */
export type Residency = "resident" | "streaming";

/** Options of {@link scoreLoglikelihoods}. */
export interface LoglikelihoodOptions {
  /** Upper bound on rows × padded length of one batch (default 2048: 16 rows of 128; larger batches were no faster on wasm). */
  batchTokens?: number;
  /** Default "resident". */
  residency?: Residency;
  /** Streaming only: tokens embedded per wave, each wave re-reads every block (default 65,536). */
  waveTokens?: number;
  /** Id written into right-padding slots (never read; default 0). */
  padId?: number;
  /**
   * Scores the batches on this pool of threads (src/eval/scoring_pool.ts,
   * started for the same model) instead of in this thread; the scores are the
   * same bits. Resident only.
   */
  pool?: BatchScorer;
  /**
   * Receives a `loglikelihood` event after each batch: requests done so far
   * and in all, the padded tokens the batch forwarded, and the wall seconds
   * since the previous batch finished (or since scoring started).
   */
  events?: StageEvents;
}

/** A request after left truncation, with its place in the request list. */
interface Prepared extends TruncatedRequest {
  index: number;
}

/** One padded batch (src/eval/truncation.ts `padRequests`) and the requests in its rows. */
interface Batch extends PaddedBatch {
  members: Prepared[];
}

/**
 * Applies lm-eval's left truncation (src/eval/truncation.ts) to request `index`.
 *
 * @throws Error naming the request for a start out of range, a
 *   continuation that cannot fit in `maxPositions` or an id outside the vocabulary
 */
function prepare(request: LoglikelihoodRequest, index: number, maxPositions: number, vocabSize: number): Prepared {
  const truncated = truncateRequest(request, maxPositions, vocabSize, (fault) => {
    switch (fault.kind) {
      case "start":
        return `Request ${index} has continuation start ${fault.start} for ${fault.tokens} tokens: ` +
          `need 1 ≤ start < ${fault.tokens} (a context token and a continuation token)`;
      case "continuation":
        return `Request ${index} has a ${fault.length}-token continuation, longer than the model's ${fault.maxPositions} positions`;
      case "token":
        return `Request ${index} has token id ${fault.id} at ${fault.at}, outside the vocabulary of ${fault.vocabSize}`;
    }
  });
  return { index, ...truncated };
}

/** Groups prepared requests, longest first, into padded batches of at most `batchTokens`. */
function makeBatches(prepared: Prepared[], batchTokens: number, padId: number): Batch[] {
  const sorted = [...prepared].sort((a, b) => b.input.length - a.input.length || a.index - b.index);
  const batches: Batch[] = [];
  let i = 0;
  while (i < sorted.length) {
    const length = sorted[i].input.length;
    const rows = Math.max(1, Math.min(sorted.length - i, Math.floor(batchTokens / length)));
    const members = sorted.slice(i, i + rows);
    i += rows;
    batches.push({ members, ...padRequests(members, padId) });
  }
  return batches;
}

/** What scoring a batch reads of a model: its architecture, config and outer weights, all a scoring slot needs besides the blocks (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type ScoringModel = Pick<ModelHandle, "arch" | "cfg" | "outer">;

/**
 * Log-probabilities `[N]` of each batch target from the final hidden states
 * `[B, T, d]`: gather the scored positions, head, log-softmax, pick.
 */
function targetLogprobs(model: ScoringModel, batch: PaddedBatch, hidden: Tensor): Float32Array {
  const { arch, cfg, outer } = model;
  const n = batch.targets.length;
  const picked = tf.tidy(() => {
    const flat = tf.reshape(hidden, [batch.rows * batch.length, cfg.hidden]); // [B·T, d]
    const rows = tf.gather(flat, tf.tensor1d(batch.positions, "int32")); // [N, d]
    const logits = arch.head(outer, tf.reshape(rows, [1, n, cfg.hidden]), cfg); // [1, N, V]
    const vocab = logits.shape[2]!;
    const logProbs = tf.logSoftmax(tf.reshape(logits, [n, vocab])); // [N, V]
    const index = new Int32Array(n);
    for (let j = 0; j < n; j++) index[j] = j * vocab + batch.targets[j];
    return tf.gather(tf.reshape(logProbs, [n * vocab]), tf.tensor1d(index, "int32")); // [N]
  });
  const values = picked.dataSync() as Float32Array;
  picked.dispose();
  return values;
}

/** Adds each member's target log-probabilities into `out`. */
function collect(batch: Batch, logprobs: Float32Array, out: LoglikelihoodResult[]): void {
  let at = 0;
  for (const m of batch.members) {
    let sum = 0;
    for (let j = 0; j < m.targets.length; j++) sum += logprobs[at++];
    out[m.index] = { logprob: sum, tokens: m.targets.length };
  }
}

/** Consecutive runs of batches holding at most `waveTokens` padded tokens each (at least one batch). */
function waves(batches: Batch[], waveTokens: number): Batch[][] {
  const out: Batch[][] = [];
  let current: Batch[] = [];
  let tokens = 0;
  for (const b of batches) {
    const size = b.rows * b.length;
    if (current.length > 0 && tokens + size > waveTokens) {
      out.push(current);
      current = [];
      tokens = 0;
    }
    current.push(b);
    tokens += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function embedBatch(model: ScoringModel, batch: PaddedBatch): Tensor {
  return tf.tidy(() => model.arch.embed(model.outer, tf.tensor2d(batch.ids, [batch.rows, batch.length], "int32"), model.cfg)); // [B, T, d]
}

function applyBlock(model: ScoringModel, weights: WeightMap, h: Tensor): Tensor {
  const next = model.arch.block(weights, h, model.cfg); // [B, T, d]
  h.dispose();
  return next;
}

/**
 * The log-probabilities `[N]` of a padded batch's targets through every block
 * of `blocks` (resident): the one computation of a batch, in this thread or on
 * a scoring pool's slot (src/eval/scoring_pool.ts), so a request's score does
 * not depend on where its batch ran (docs/DISTRIBUTED.md "How tune and eval
 * use the cores").
 */
export function batchLogprobs(model: ScoringModel, blocks: readonly WeightMap[], batch: PaddedBatch): Float32Array {
  let h = embedBatch(model, batch); // [B, T, d]
  try {
    for (const weights of blocks) h = applyBlock(model, weights, h);
    return targetLogprobs(model, batch, h);
  } finally {
    h.dispose();
  }
}

/**
 * Scores every request with `model` (see the module notes for truncation,
 * batching and residency). Results come back in request order.
 *
 * @throws Error naming the request for an empty context, an out-of-vocabulary
 *   id or a continuation longer than the model's positions
 */
export async function scoreLoglikelihoods(
  model: ModelHandle,
  requests: readonly LoglikelihoodRequest[],
  options: LoglikelihoodOptions = {},
): Promise<LoglikelihoodResult[]> {
  const { cfg } = model;
  const batchTokens = options.batchTokens ?? 2048;
  const waveTokens = options.waveTokens ?? 65_536;
  const padId = options.padId ?? 0;
  if (!Number.isInteger(batchTokens) || batchTokens < 1) throw new Error(`Batch tokens must be a positive integer, got ${batchTokens}`);
  if (!Number.isInteger(padId) || padId < 0 || padId >= cfg.vocabSize) {
    throw new Error(`Pad id ${padId} is outside the vocabulary of ${cfg.vocabSize}`);
  }
  const prepared = requests.map((r, i) => prepare(r, i, cfg.maxPositions, cfg.vocabSize));
  const batches = makeBatches(prepared, batchTokens, padId);
  const out: LoglikelihoodResult[] = new Array(requests.length);
  let done = 0;
  let since = performance.now();
  const finish = (batch: Batch, logprobs: Float32Array) => {
    collect(batch, logprobs, out);
    done += batch.members.length;
    const now = performance.now();
    options.events?.next({
      stage: "loglikelihood",
      done,
      total: requests.length,
      unit: "requests",
      seconds: (now - since) / 1000,
      tokens: batch.rows * batch.length,
    });
    since = now;
  };

  const { pool } = options;
  if (pool) {
    if (options.residency === "streaming") throw new Error("A scoring pool holds every block: it scores resident, not streaming");
    await Promise.all(batches.map(async (batch) => finish(batch, await pool.score(batch))));
    return out;
  }
  if ((options.residency ?? "resident") === "resident") {
    const blocks: WeightMap[] = [];
    try {
      for (const i of model.blockIndices) blocks.push(await model.loadBlock(i));
      for (const batch of batches) finish(batch, batchLogprobs(model, blocks, batch));
    } finally {
      for (const weights of blocks) tf.dispose([...weights.values()]);
    }
    return out;
  }

  for (const wave of waves(batches, waveTokens)) {
    const hidden: Tensor[] = []; // each [B, T, d]
    try {
      for (const batch of wave) hidden.push(embedBatch(model, batch));
      for (const i of model.blockIndices) {
        const weights = await model.loadBlock(i);
        try {
          for (let j = 0; j < hidden.length; j++) hidden[j] = applyBlock(model, weights, hidden[j]);
        } finally {
          tf.dispose([...weights.values()]);
        }
      }
      wave.forEach((batch, j) => finish(batch, targetLogprobs(model, batch, hidden[j])));
    } finally {
      tf.dispose(hidden);
    }
  }
  return out;
}
