/**
 * The entry of a scoring worker thread (docs/DISTRIBUTED.md "How tune and
 * eval use the cores"): it serves the scoring pool's requests
 * (src/eval/scoring_pool.ts) with a {@link scoringHandler}, as the calling
 * thread serves those of its own slot.
 *
 * @module
 */
import { serveRequests } from "../distributed/worker_pool.ts";
import { type ScoringReply, type ScoringRequest, scoringHandler } from "./scoring_handler.ts";

serveRequests<ScoringRequest, ScoringReply>(scoringHandler());
