/**
 * `poolCompression`: GradOT's scoring and compression of the middle blocks
 * on the calibration worker pool (docs/DISTRIBUTED.md "All cores of one
 * machine"), so a block is scored and compressed while the backward pass
 * goes on to the next. Each middle block goes to the pool in parts (each
 * attention linear, the MLP: src/distributed/block_parts.ts), each part's
 * weights and factors as the values of a block job (`blockJobValue`, what
 * the queue's files hold: the factors as they are held), moved to a slot
 * without a copy; the slot runs `gradotCompression` on them, and the block's
 * compressed parts are put back together here. The compressed blocks come
 * out in the order the blocks came, so the shards are a one-thread build's.
 * Adapter blocks, which are only copied, run `local` here.
 *
 * @module
 */
import { type OperatorFunction, of } from "rxjs";
import { type BlockSettings, compressedBlockFromValue } from "../distributed/block_files.ts";
import { mergeParts, partJobs } from "../distributed/block_parts.ts";
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

/** Sends one middle block to the pool, part by part, and takes its compressed weights back. */
async function compressOnPool(record: StatsRecord, o: PoolCompressionOptions): Promise<ScoredBlockRecord> {
  const { weights } = record; // what no part changes stays here
  try {
    const jobs = partJobs(record, { dir: o.model.source, sourceHash: o.model.sourceHash, split: o.model.split }, o.settings);
    const pool = await o.pool.started;
    const parts = await Promise.all(jobs.map(({ part, job }) => pool.compress(job).then((block) => ({ part, block }))));
    if (record.published) pool.retire(record.published); // every part answered: no job reads it any more
    const compression = mergeParts(weights, parts.map(({ part, block }) => ({ part, block: compressedBlockFromValue(block) })));
    return { model: record.model, index: record.index, role: record.role, weights, drd: new Map(), compression };
  } catch (e) {
    disposeWeights(weights);
    throw e;
  }
}

/** The operator of the module doc: as many blocks at a time as the pool has workers. */
export function poolCompression(options: PoolCompressionOptions): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  return orderedMergeMap(
    (record: StatsRecord) => record.role === "middle" ? compressOnPool(record, options) : of(record).pipe(options.local),
    options.pool.size,
  );
}
