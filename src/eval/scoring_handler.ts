/**
 * The requests of a scoring pool and what serves them (docs/DISTRIBUTED.md
 * "How tune and eval use the cores"; main side: src/eval/scoring_pool.ts), in
 * a worker thread (src/eval/scoring_worker.ts) or in the calling thread, which
 * is one of the pool's slots: each scores whole padded batches with
 * `batchLogprobs`, the function the one-thread scorer runs.
 *
 * A worker gets the model's weights as a {@link SharedModel} (copied once into
 * shared memory) and keeps their tensors for its life; the calling thread's
 * slot is handed its own resident tensors.
 *
 * @module
 */
import type { WeightMap } from "../model/types.ts";
import { modelFromShared, movableBuffers, type SharedModel } from "../distributed/shared_weights.ts";
import type { Reply } from "../distributed/worker_pool.ts";
import { batchLogprobs, type ScoringModel } from "./loglikelihood.ts";
import type { PaddedBatch } from "./truncation.ts";

/** Requests a scoring slot serves: the model once, then whole batches (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type ScoringRequest =
  | { kind: "init"; model: SharedModel }
  /** The calling thread's slot: its own model and resident blocks, not copied. */
  | { kind: "resident"; model: ScoringModel; blocks: readonly WeightMap[] }
  | { kind: "score"; batch: PaddedBatch };

/** What a slot answers: nothing to `init`, the targets' log-probabilities `[N]` to `score` (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type ScoringReply = { kind: "ready" } | { kind: "score"; logprobs: Float32Array };

/** A slot's request handler, with its own model once initialised: the same in a worker and in the calling thread (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function scoringHandler(): (request: ScoringRequest) => Promise<Reply<ScoringReply>> {
  let state: { model: ScoringModel; blocks: readonly WeightMap[] } | undefined;
  return async (request) => {
    switch (request.kind) {
      case "init": {
        const { blocks, ...model } = await modelFromShared(request.model);
        state = { model, blocks };
        return { value: { kind: "ready" } };
      }
      case "resident":
        state = { model: request.model, blocks: request.blocks };
        return { value: { kind: "ready" } };
      case "score": {
        if (!state) throw new Error(`Scoring slot received "score" before "init"`);
        const logprobs = batchLogprobs(state.model, state.blocks, request.batch);
        return { value: { kind: "score", logprobs }, transfer: movableBuffers(logprobs) };
      }
    }
  };
}
