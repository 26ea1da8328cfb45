/**
 * The requests of a scoring pool and what serves them (docs/DISTRIBUTED.md
 * "How tune and eval use the cores"; main side: src/eval/scoring_pool.ts), in
 * a worker thread (src/eval/scoring_worker.ts) or in the calling thread, which
 * is one of the pool's slots: each scores whole padded batches with
 * `batchLogprobs`, the function the one-thread scorer runs.
 *
 * A worker gets the model's weights as {@link SharedWeights} (copied once into
 * shared memory) and keeps their tensors for its life; the calling thread's
 * slot is handed its own resident tensors.
 *
 * @module
 */
import { architectureFor } from "../model/registry.ts";
import type { WeightMap } from "../model/types.ts";
import { movableBuffers, type SharedWeights, sharedWeightMap } from "../distributed/shared_weights.ts";
import type { Reply } from "../distributed/worker_pool.ts";
import { initBackend } from "../tensor/backend.ts";
import { batchLogprobs, type ScoringModel } from "./loglikelihood.ts";
import type { PaddedBatch } from "./truncation.ts";

/** Requests a scoring slot serves: the model once, then whole batches (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type ScoringRequest =
  | {
    kind: "init";
    /** The config.json object. */
    config: Record<string, unknown>;
    /** The calling thread's tensor backend. */
    backend: string | undefined;
    outer: SharedWeights;
    /** One per block position, in forward order (a block at several positions is one publication). */
    blocks: SharedWeights[];
  }
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
        await initBackend(request.backend, true);
        const arch = architectureFor(String(request.config.model_type));
        const built = new Map<number, WeightMap>(); // by publication
        const weights = (s: SharedWeights) => built.get(s.id) ?? built.set(s.id, sharedWeightMap(s)).get(s.id)!;
        state = { model: { arch, cfg: arch.parseConfig(request.config), outer: sharedWeightMap(request.outer) }, blocks: request.blocks.map(weights) };
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
