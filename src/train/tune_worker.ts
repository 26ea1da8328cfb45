/**
 * The entry of a tuning worker thread (docs/DISTRIBUTED.md "How tune and eval
 * use the cores"): it serves the tuning engine's requests
 * (src/train/tune_engine.ts) with the replica of src/train/tune_replica.ts,
 * as the calling thread serves those of its own slot.
 *
 * @module
 */
import { serveRequests } from "../distributed/worker_pool.ts";
import type { AnswerBatch } from "./mc_batches.ts";
import { replicaHandler, type ReplicaReply, type ReplicaRequest } from "./replica.ts";
import { type TuneSetup, tuneReplica } from "./tune_replica.ts";

serveRequests<ReplicaRequest<TuneSetup, AnswerBatch>, ReplicaReply>(replicaHandler(tuneReplica));
