/**
 * GradOT's per-block scoring and compression (GCS, then DRD and SCP;
 * docs/METHOD.md §2), apart from the rest of the chain so that a worker
 * thread or a queue job imports only what it runs (docs/DISTRIBUTED.md).
 *
 * @module
 */
import { identity, type MonoTypeOperatorFunction, type OperatorFunction, pipe } from "rxjs";
import type { BlockSettings } from "../distributed/block_files.ts";
import type { StageEvents } from "../events/stage_events.ts";
import type { ScoredBlockRecord, StatsRecord } from "../records/records.ts";
import { compressDrd } from "./compress_drd.ts";
import { compressScp } from "./compress_scp.ts";
import { scoreGcs } from "./score_gcs.ts";

/**
 * Scoring and compression of one block record (GCS, then DRD and SCP) with
 * `settings`: the part of the chain a worker runs for a block
 * (docs/DISTRIBUTED.md "Many machines"). `between` runs after the scoring.
 */
export function gradotCompression(
  settings: BlockSettings,
  events?: StageEvents,
  between: MonoTypeOperatorFunction<ScoredBlockRecord> = identity,
): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  const budget = { ratio: settings.ratio, attnShare: settings.attnShare, only: settings.only };
  const { selection, parts } = settings;
  return pipe(
    scoreGcs({ lambdaAttn: settings.lambdaAttn, lambdaMlp: settings.lambdaMlp, events, parts }),
    between,
    compressDrd({ ...budget, keepTopFraction: settings.keepTopFraction, selection, events }),
    compressScp({ ...budget, selection, events, parts }),
  );
}
