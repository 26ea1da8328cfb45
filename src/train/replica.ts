/**
 * The slot side of data-parallel gradients (docs/DISTRIBUTED.md "All cores of
 * one machine"; main side: src/train/data_parallel.ts `startReplicas`): a
 * replica of a model that computes the loss and gradient of the parts of a
 * batch it is sent, the pretrainer's (src/train/grad_worker.ts) and the
 * tuner's (src/train/tune_worker.ts) alike.
 *
 * It reads the parameters from a `SharedArrayBuffer` the main thread writes
 * before each round and writes part `j`'s gradient into slot `j` of a shared
 * gradient buffer, so no parameter or gradient bytes travel in messages. An
 * `Int32Array` of sequence numbers in shared memory, written and read with
 * `Atomics`, orders those plain writes across threads (the JavaScript memory
 * model gives no such guarantee for `postMessage` alone) and catches a
 * replica answering for the wrong round.
 *
 * @module
 */
import type { Reply } from "../distributed/worker_pool.ts";

/** What a replica computes on a part of a batch, at parameters it is given: the model-specific half of a data-parallel slot (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface Replica<Part> {
  /** Values in the flat parameter (and gradient) vector. */
  readonly size: number;
  /** Writes the gradient of the part's mean loss into `grads`; returns that loss. */
  gradients(params: Float32Array, part: Part, grads: Float32Array): number;
  /** The part's mean loss. */
  loss(params: Float32Array, part: Part): number;
}

/** The shared memory of a pool of replicas (module notes): parameters and gradients never travel in messages (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface ReplicaMemory {
  /** The parameters, `size` float32 values. */
  params: SharedArrayBuffer;
  /** `slots` gradient slots of `size` float32 values each. */
  grads: SharedArrayBuffer;
  /** `[0]`: the parameters' sequence number; `[1 + j]`: the last sequence number slot `j` was written for. */
  sync: SharedArrayBuffer;
}

/** Requests a replica serves: `init` once, then one per part of each round (docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export type ReplicaRequest<Setup, Part> =
  | { kind: "init"; setup: Setup; memory: ReplicaMemory }
  | { kind: "gradients" | "loss"; seq: number; slot: number; part: Part };

/** A replica's answer: the part's mean loss (and, for "gradients", its gradient in the slot asked for; docs/DISTRIBUTED.md "How tune and eval use the cores"). */
export interface ReplicaReply {
  loss: number;
}

/**
 * A slot's request handler (a worker's `serveRequests` handler, or the
 * calling thread's `LocalSlot`'s; docs/DISTRIBUTED.md "How tune and eval use the cores"), the one
 * copy of the sequence and slot bookkeeping: `init` builds the replica from its setup
 * with `build`; later requests compute at the shared parameters of round
 * `seq`.
 */
export function replicaHandler<Setup, Part>(
  build: (setup: Setup) => Replica<Part> | Promise<Replica<Part>>,
): (request: ReplicaRequest<Setup, Part>) => Promise<Reply<ReplicaReply>> {
  let state: { replica: Replica<Part>; params: Float32Array; grads: SharedArrayBuffer; sync: Int32Array } | undefined;
  return async (request) => {
    if (request.kind === "init") {
      const replica = await build(request.setup);
      const { params, grads, sync } = request.memory;
      state = { replica, params: new Float32Array(params, 0, replica.size), grads, sync: new Int32Array(sync) };
      return { value: { loss: NaN } };
    }
    if (!state) throw new Error(`Replica received "${request.kind}" before "init"`);
    const seen = Atomics.load(state.sync, 0);
    if (seen !== request.seq) throw new Error(`Replica expected parameters of sequence ${request.seq}, found ${seen}`);
    const { replica, params } = state;
    if (request.kind === "loss") return { value: { loss: replica.loss(params, request.part) } };
    const grads = new Float32Array(state.grads, request.slot * replica.size * 4, replica.size);
    const loss = replica.gradients(params, request.part, grads);
    Atomics.store(state.sync, 1 + request.slot, request.seq);
    return { value: { loss } };
  };
}
