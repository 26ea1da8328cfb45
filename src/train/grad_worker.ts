/**
 * The worker side of the data-parallel trainer (src/train/data_parallel.ts):
 * a replica that computes the loss and gradient of its micro-batch.
 *
 * It reads the parameters from a `SharedArrayBuffer` the main thread writes
 * before each request and writes its gradient into its own slot of a shared
 * gradient buffer, so no parameter or gradient bytes travel in messages. An
 * `Int32Array` of sequence numbers in shared memory, written and read with
 * `Atomics`, orders those plain writes across threads (the JavaScript memory
 * model gives no such guarantee for `postMessage` alone) and catches a
 * replica answering for the wrong step.
 *
 * @module
 */
import { initBackend } from "../tensor/backend.ts";
import { serveRequests } from "../distributed/worker_pool.ts";
import { batchLoss, lossAndGradients, type TrainModel, trainModel } from "./gradients.ts";

/** Requests the data-parallel trainer sends a replica. */
export type GradRequest =
  | {
    kind: "init";
    config: Record<string, unknown>;
    backend: string | undefined;
    /** Rows per forward/backward pass. */
    microBatch: number;
    /** Worker index k: its gradient slot and sequence word. */
    index: number;
    params: SharedArrayBuffer;
    grads: SharedArrayBuffer;
    /** `[0]`: parameter sequence number; `[1 + k]`: worker k's last gradient sequence number. */
    sync: SharedArrayBuffer;
  }
  | { kind: "gradients" | "loss"; seq: number; ids: Int32Array; batch: number; ctx: number };

/** A replica's answer: the micro-batch loss (and, for "gradients", the gradient in its slot). */
export interface GradReply {
  loss: number;
}

interface Replica {
  model: TrainModel;
  microBatch: number;
  index: number;
  params: Float32Array;
  grads: Float32Array;
  sync: Int32Array;
}

let replica: Replica | undefined;

serveRequests<GradRequest, GradReply>(async (request) => {
  if (request.kind === "init") {
    await initBackend(request.backend, true);
    const model = trainModel(request.config);
    const size = model.layout.size;
    replica = {
      model,
      microBatch: request.microBatch,
      index: request.index,
      params: new Float32Array(request.params),
      grads: new Float32Array(request.grads, request.index * size * 4, size),
      sync: new Int32Array(request.sync),
    };
    return { value: { loss: NaN } };
  }
  if (!replica) throw new Error(`Replica received "${request.kind}" before "init"`);
  const seen = Atomics.load(replica.sync, 0);
  if (seen !== request.seq) throw new Error(`Replica expected parameters of sequence ${request.seq}, found ${seen}`);
  const batch = { ids: request.ids, batch: request.batch, ctx: request.ctx };
  const { model, params, grads, microBatch } = replica;
  if (request.kind === "loss") return { value: { loss: batchLoss(model, params, batch, microBatch) } };
  const loss = lossAndGradients(model, params, batch, grads, microBatch);
  Atomics.store(replica.sync, 1 + replica.index, request.seq);
  return { value: { loss } };
});
