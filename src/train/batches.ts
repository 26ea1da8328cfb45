/**
 * Training and validation batches cut from a token stream (the `Uint16`
 * documents-joined-by-`</s>` stream the data builder writes).
 *
 * Training windows start at uniformly drawn offsets (with replacement, as
 * nanoGPT does): over a run every token is seen about `steps·B·T / N` times
 * with no epoch bookkeeping, and the sampler's whole state is one PRNG word,
 * so resuming continues the exact sequence. Windows may span a document
 * boundary; the `</s>` between documents teaches the model where one ends.
 * Validation windows are fixed, evenly spaced and non-overlapping, so
 * validation losses of different steps (and runs) compare.
 *
 * @module
 */
import { Prng } from "./prng.ts";

/** A batch of token windows: `ids` is `[batch, ctx]` row-major. */
export interface TokenBatch {
  ids: Int32Array;
  batch: number;
  ctx: number;
}

function checkWindow(tokens: Uint16Array, ctx: number, what: string): void {
  if (!Number.isInteger(ctx) || ctx < 2) throw new Error(`Context length must be an integer ≥ 2, got ${ctx}`);
  if (tokens.length < ctx) {
    throw new Error(`The ${what} token stream holds ${tokens.length} tokens, fewer than one window of ${ctx}`);
  }
}

/** Draws `[batch, ctx]` training windows at seeded uniform offsets. */
export class WindowSampler {
  readonly #tokens: Uint16Array;
  readonly #prng: Prng;
  readonly batch: number;
  readonly ctx: number;

  /**
   * @param state the seed, or a saved {@link WindowSampler.state} to resume from
   */
  constructor(tokens: Uint16Array, batch: number, ctx: number, state: number) {
    checkWindow(tokens, ctx, "training");
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`Batch size must be a positive integer, got ${batch}`);
    this.#tokens = tokens;
    this.#prng = new Prng(state);
    this.batch = batch;
    this.ctx = ctx;
  }

  /** The PRNG word that reproduces every later batch. */
  get state(): number {
    return this.#prng.state;
  }

  /** The next batch; rows are windows `tokens[o, o + ctx)` with `o` uniform in [0, N − ctx]. */
  next(): TokenBatch {
    const { batch, ctx } = this;
    const ids = new Int32Array(batch * ctx); // [B, T]
    const starts = this.#tokens.length - ctx + 1;
    for (let b = 0; b < batch; b++) {
      const o = this.#prng.below(starts);
      ids.set(this.#tokens.subarray(o, o + ctx), b * ctx);
    }
    return { ids, batch, ctx };
  }
}

/**
 * `count` fixed validation windows of `ctx` tokens, evenly spaced over the
 * stream and non-overlapping (fewer if the stream is short), as one batch.
 */
export function validationWindows(tokens: Uint16Array, ctx: number, count: number): TokenBatch {
  checkWindow(tokens, ctx, "validation");
  if (!Number.isInteger(count) || count < 1) throw new Error(`Validation window count must be positive, got ${count}`);
  const fit = Math.floor(tokens.length / ctx);
  const batch = Math.min(count, fit);
  const stride = Math.floor(fit / batch) * ctx;
  const ids = new Int32Array(batch * ctx); // [B, T]
  for (let b = 0; b < batch; b++) ids.set(tokens.subarray(b * stride, b * stride + ctx), b * ctx);
  return { ids, batch, ctx };
}

/** Rows `[from, to)` of a batch, as a batch of their own (a worker's micro-batch). */
export function sliceBatch(batch: TokenBatch, from: number, to: number): TokenBatch {
  return { ids: batch.ids.subarray(from * batch.ctx, to * batch.ctx), batch: to - from, ctx: batch.ctx };
}
