/**
 * A replica of a fine-tuning run (src/train/replica.ts): the frozen model and
 * the trainable set, computing the answer loss and its gradient w.r.t. the
 * trainable parameters on a micro-batch (src/train/tune_loop.ts), in a worker
 * thread (src/train/tune_worker.ts) or in the calling thread
 * (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * A worker gets the frozen weights as {@link SharedWeights} (one copy in
 * shared memory every worker reads; a block repeated at several positions,
 * as a CRaSh emulator's, is one) and builds the trainable set from the same
 * scope, so its layout, and every value it computes, is the calling
 * thread's.
 *
 * @module
 */
import { architectureFor } from "../model/registry.ts";
import type { WeightMap } from "../model/types.ts";
import { type SharedWeights, sharedWeightMap, shareWeights } from "../distributed/shared_weights.ts";
import { initBackend, tf } from "../tensor/backend.ts";
import type { AnswerBatch } from "./mc_batches.ts";
import { slotTensors } from "./params.ts";
import type { Replica } from "./replica.ts";
import { answerLoss, answerLossAndGradients } from "./tune_loop.ts";
import { type ResidentModel, type TrainableSet, trainableSet, type TuneScope } from "./tune_params.ts";

/** What a tuning replica is built from: the shared weights and scope (a worker), or the calling thread's own model (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type TuneSetup =
  | {
    kind: "shared";
    /** The config.json object. */
    config: Record<string, unknown>;
    /** The calling thread's tensor backend. */
    backend: string | undefined;
    outer: SharedWeights;
    /** One per resident block position. */
    blocks: SharedWeights[];
    scope: TuneScope;
  }
  | { kind: "resident"; model: ResidentModel; trainable: TrainableSet };

/** The workers' setup of `model` and `trainable`: their weights copied once into shared memory, not once per worker (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function sharedTuneSetup(model: ResidentModel, trainable: TrainableSet, backend: string | undefined): TuneSetup {
  const published = new Map<WeightMap, SharedWeights>(); // a block at several positions is shared once
  const share = (w: WeightMap) => published.get(w) ?? published.set(w, shareWeights(w)).get(w)!;
  return {
    kind: "shared",
    config: model.cfg.raw,
    backend,
    outer: shareWeights(model.outer),
    blocks: model.blocks.map(share),
    scope: trainable.scope,
  };
}

/** The replica of `setup` (in a worker: its weights as tensors on this thread's heap, kept for the thread's life; docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export async function tuneReplica(setup: TuneSetup): Promise<Replica<AnswerBatch>> {
  let model: ResidentModel;
  let trainable: TrainableSet;
  if (setup.kind === "resident") {
    ({ model, trainable } = setup);
  } else {
    await initBackend(setup.backend, true);
    const arch = architectureFor(String(setup.config.model_type));
    const built = new Map<number, WeightMap>(); // by publication: one block's tensors for its every position
    const weights = (s: SharedWeights) => built.get(s.id) ?? built.set(s.id, sharedWeightMap(s)).get(s.id)!;
    model = { arch, cfg: arch.parseConfig(setup.config), outer: sharedWeightMap(setup.outer), blocks: setup.blocks.map(weights) };
    trainable = trainableSet(model, setup.scope);
  }
  return {
    size: trainable.layout.size,
    gradients: (params, part, grads) => answerLossAndGradients(model, trainable, params, part, grads),
    loss(params, part) {
      const w = slotTensors(trainable.layout, params);
      try {
        return tf.tidy(() => {
          const { outer, blocks } = trainable.assemble(w);
          return answerLoss(model.arch, model.cfg, outer, blocks, part).dataSync()[0];
        });
      } finally {
        tf.dispose(w);
      }
    },
  };
}
