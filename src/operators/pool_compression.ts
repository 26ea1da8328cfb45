/**
 * `poolCompression`: GradOT's scoring and compression of the middle blocks
 * on the calibration worker pool (docs/DISTRIBUTED.md "All cores of one
 * machine"), so a block is scored and compressed while the backward pass
 * goes on to the next. Each middle block's weights and factors travel as
 * the values of a block job (`blockJobValue`, what the queue's files hold:
 * the factors as they are held), moved to the worker without a copy; the
 * worker runs `gradotCompression` on them, and the
 * compressed blocks come out in the order the blocks came, so the shards are
 * a one-thread build's. Adapter blocks, which are only copied, run `local`
 * here.
 *
 * @module
 */
import { type OperatorFunction, of } from "rxjs";
import { type BlockJobValue, blockJobValue, type BlockSettings, compressedBlockFromValue } from "../distributed/block_files.ts";
import type { StartingPool } from "../distributed/calibration_pool.ts";
import { disposeWeights } from "../model/weights.ts";
import type { ModelHandle, ScoredBlockRecord, StatsRecord } from "../records/records.ts";
import { orderedMergeMap } from "./ordered_merge_map.ts";

/** Options of {@link poolCompression}. */
export interface PoolCompressionOptions {
  /** The pool (awaited when its first block comes). */
  pool: StartingPool;
  /** The model being compressed. */
  model: ModelHandle;
  /** The block settings every block is compressed with. */
  settings: BlockSettings;
  /** The in-thread chain for the blocks not sent out (adapter blocks). */
  local: OperatorFunction<StatsRecord, ScoredBlockRecord>;
}

/** Sends one middle block to the pool and takes its compressed weights back. */
async function compressOnPool(record: StatsRecord, o: PoolCompressionOptions): Promise<ScoredBlockRecord> {
  let job: BlockJobValue;
  try {
    job = blockJobValue(record, { dir: o.model.source, sourceHash: o.model.sourceHash, split: o.model.split }, o.settings);
  } finally {
    disposeWeights(record.weights);
    record.stats.clear();
  }
  const pool = await o.pool.started;
  const { weights, compression } = compressedBlockFromValue(await pool.compress(job));
  return { model: record.model, index: record.index, role: record.role, weights, drd: new Map(), compression };
}

/** The operator of the module doc: as many blocks at a time as the pool has workers. */
export function poolCompression(options: PoolCompressionOptions): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  return orderedMergeMap(
    (record: StatsRecord) => record.role === "middle" ? compressOnPool(record, options) : of(record).pipe(options.local),
    options.pool.size,
  );
}
