/**
 * A replica of a fine-tuning run (src/train/replica.ts): the frozen model and
 * the trainable set, computing the answer loss and its gradient w.r.t. the
 * trainable parameters on a micro-batch (src/train/tune_loop.ts), in a worker
 * thread (src/train/tune_worker.ts) or in the calling thread
 * (docs/DISTRIBUTED.md "How tune and eval use the cores").
 *
 * A worker gets the frozen weights as a {@link SharedModel} (one copy in
 * shared memory every worker reads; a block repeated at several positions,
 * as a CRaSh emulator's, is one) and builds the trainable set from the same
 * scope, so its layout, and every value it computes, is the calling
 * thread's.
 *
 * @module
 */
import { modelFromShared, type SharedModel, shareModel } from "../distributed/shared_weights.ts";
import { tf } from "../tensor/backend.ts";
import type { AnswerBatch } from "./mc_batches.ts";
import { slotTensors } from "./params.ts";
import type { Replica } from "./replica.ts";
import { answerLoss, answerLossAndGradients } from "./tune_loop.ts";
import { type ResidentModel, type TrainableSet, trainableSet, type TuneScope } from "./tune_params.ts";

/** What a tuning replica is built from: the shared weights and scope (a worker), or the calling thread's own model (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type TuneSetup =
  | { kind: "shared"; model: SharedModel; scope: TuneScope }
  | { kind: "resident"; model: ResidentModel; trainable: TrainableSet };

/** The workers' setup of `model` and `trainable`: their weights copied once into shared memory, not once per worker (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export function sharedTuneSetup(model: ResidentModel, trainable: TrainableSet, backend: string | undefined): TuneSetup {
  return { kind: "shared", model: shareModel(model, backend), scope: trainable.scope };
}

/** The replica of `setup` (in a worker: its weights as tensors on this thread's heap, kept for the thread's life; docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export async function tuneReplica(setup: TuneSetup): Promise<Replica<AnswerBatch>> {
  let model: ResidentModel;
  let trainable: TrainableSet;
  if (setup.kind === "resident") {
    ({ model, trainable } = setup);
  } else {
    model = await modelFromShared(setup.model);
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
