/**
 * The worker side of the data-parallel pretrainer (src/train/data_parallel.ts
 * `startDataParallel`): a replica (src/train/replica.ts) of the model that
 * computes the LM loss and gradient of its share of a batch's rows,
 * `microBatch` rows per forward/backward pass (src/train/gradients.ts).
 *
 * @module
 */
import { initBackend } from "../tensor/backend.ts";
import { serveRequests } from "../distributed/worker_pool.ts";
import type { TokenBatch } from "./batches.ts";
import { batchLoss, lossAndGradients, trainModel } from "./gradients.ts";
import { type Replica, replicaHandler, type ReplicaReply, type ReplicaRequest } from "./replica.ts";

/** What a pretraining replica is built from (docs/DISTRIBUTED.md "All cores of one machine"). */
export interface PretrainSetup {
  /** The config.json object. */
  config: Record<string, unknown>;
  /** The tensor backend of the main thread. */
  backend: string | undefined;
  /** Rows per forward/backward pass. */
  microBatch: number;
}

/** The pretraining replica of `setup`, on the main thread's backend. */
async function pretrainReplica(setup: PretrainSetup): Promise<Replica<TokenBatch>> {
  await initBackend(setup.backend, true);
  const model = trainModel(setup.config);
  return {
    size: model.layout.size,
    gradients: (params, part, grads) => lossAndGradients(model, params, part, grads, setup.microBatch),
    loss: (params, part) => batchLoss(model, params, part, setup.microBatch),
  };
}

serveRequests<ReplicaRequest<PretrainSetup, TokenBatch>, ReplicaReply>(replicaHandler(pretrainReplica));
