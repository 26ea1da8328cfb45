/**
 * Scoring on all cores (docs/DISTRIBUTED.md "How tune and eval use the
 * cores"): a pool of `n` slots, `n - 1` worker threads
 * (src/eval/scoring_worker.ts) and the calling thread, each holding every
 * block of one model, to which the log-likelihood scorer hands whole padded
 * batches (src/eval/loglikelihood.ts `pool`). The batches are made as in one
 * thread and each is scored whole by one slot with the same function, so the
 * scores, and the evaluation report, are the same bits for any `n`.
 *
 * Each batch is posted at once to the slot with the fewest pending
 * (`SlotPool.post`), so the calling thread, which only routes between its
 * own batches, scores about as many as a worker.
 *
 * @module
 */
import type { WeightMap } from "../model/types.ts";
import type { ModelHandle } from "../records/records.ts";
import { shareModel } from "../distributed/shared_weights.ts";
import { SlotPool } from "../distributed/slot_pool.ts";
import { currentBackend, tf } from "../tensor/backend.ts";
import type { BatchScorer } from "./loglikelihood.ts";
import { type ScoringReply, type ScoringRequest, scoringHandler } from "./scoring_handler.ts";
import type { PaddedBatch } from "./truncation.ts";

/** A model's blocks resident on `n` slots, scoring padded batches, so evaluation uses every core (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export class ScoringPool implements BatchScorer {
  readonly #slots: SlotPool<ScoringRequest, ScoringReply>;
  readonly #blocks: WeightMap[];

  private constructor(slots: SlotPool<ScoringRequest, ScoringReply>, blocks: WeightMap[]) {
    this.#slots = slots;
    this.#blocks = blocks;
  }

  /**
   * Loads every block of `model` (a block at several positions once), starts
   * `threads - 1` workers, each with the weights copied once into shared
   * memory and this thread's tensor backend, and readies this thread's slot.
   *
   * @throws Error when `threads` is below 2, the model streams its
   *   vocabulary (its head is not in `outer`), or a worker cannot start
   */
  static async start(model: ModelHandle, threads: number): Promise<ScoringPool> {
    if (!Number.isInteger(threads) || threads < 2) throw new Error(`A scoring pool has at least 2 threads, got ${threads}`);
    if (model.vocabulary) throw new Error(`A scoring pool needs the head in memory; "${model.source}" streams its vocabulary`);
    const byIndex = new Map<number, WeightMap>();
    try {
      for (const i of model.blockIndices) if (!byIndex.has(i)) byIndex.set(i, await model.loadBlock(i));
    } catch (e) {
      for (const w of byIndex.values()) tf.dispose([...w.values()]);
      throw e;
    }
    const loaded = [...byIndex.values()];
    const blocks = model.blockIndices.map((i) => byIndex.get(i)!);
    let slots: SlotPool<ScoringRequest, ScoringReply> | undefined;
    try {
      slots = await SlotPool.start<ScoringRequest, ScoringReply>(new URL("./scoring_worker.ts", import.meta.url), {
        workers: threads - 1,
        local: scoringHandler(),
      });
      const init: ScoringRequest = { kind: "init", model: shareModel({ cfg: model.cfg, outer: model.outer, blocks }, currentBackend()) };
      const local: ScoringRequest = { kind: "resident", model, blocks };
      await slots.broadcast((k) => (k === threads - 1 ? local : init));
    } catch (e) {
      await slots?.close();
      for (const w of loaded) tf.dispose([...w.values()]);
      throw e;
    }
    return new ScoringPool(slots, loaded);
  }

  /** Threads scoring: the workers and this one. */
  get threads(): number {
    return this.#slots.size;
  }

  /** The log-probabilities `[N]` of the batch's targets, scored on the slot with the fewest pending. */
  async score(batch: PaddedBatch): Promise<Float32Array> {
    const { ids, rows, length, positions, targets } = batch; // the arrays alone, not the caller's extra fields
    const reply = await this.#slots.post({ kind: "score", batch: { ids, rows, length, positions, targets } });
    if (reply.kind !== "score") throw new Error(`Scoring slot answered "${reply.kind}" to "score"`);
    return reply.logprobs;
  }

  /** Terminates the workers and releases this thread's blocks. */
  async close(): Promise<void> {
    await this.#slots.close();
    for (const w of this.#blocks) tf.dispose([...w.values()]);
    this.#blocks.length = 0;
  }
}
