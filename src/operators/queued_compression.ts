/**
 * `queuedCompression`: GradOT's scoring and compression of the middle blocks
 * as jobs of a queue (docs/DISTRIBUTED.md "Many machines"). Each middle
 * block's weights and KFAC factors are written to a `.block` file on shared
 * storage (src/distributed/block_files.ts) and a job `offtune gradot-block
 * --input <file> --out <file>` is submitted at once, so the blocks are
 * compressed side by side on the workers while the calibration backward goes
 * on; the compressed blocks are passed on in the order the blocks came, so
 * the shards (and the manifest's list of them) are those of a one-process
 * build. Adapter blocks, which are only copied, run `local` here.
 *
 * @module
 */
import { concatAll, from, map, type Observable, of, type OperatorFunction } from "rxjs";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type BlockSettings, readCompressedBlock, writeBlockJob } from "../distributed/block_files.ts";
import type { JobSubmitter } from "../distributed/job_queue.ts";
import { disposeWeights } from "../model/weights.ts";
import type { ModelHandle, ScoredBlockRecord, StatsRecord } from "../records/records.ts";

/** Options of {@link queuedCompression}. */
export interface QueuedCompressionOptions {
  /** The queue the jobs go to. */
  submitter: JobSubmitter;
  /** The shared directory the block files are written to (in its `blocks/`). */
  storage: string;
  /** The model being compressed (its directory must be on shared storage too). */
  model: ModelHandle;
  /** The block settings every job carries. */
  settings: BlockSettings;
  /** The in-process chain for the blocks not sent out (adapter blocks). */
  local: OperatorFunction<StatsRecord, ScoredBlockRecord>;
}

/** Writes one middle block out, runs its job and reads the compressed block back. */
async function compressRemotely(record: StatsRecord, o: QueuedCompressionOptions): Promise<ScoredBlockRecord> {
  const dir = join(resolve(o.storage), "blocks");
  let input: string;
  try {
    input = await writeBlockJob(dir, record, { dir: resolve(o.model.source), sourceHash: o.model.sourceHash, split: o.model.split }, o.settings);
  } finally {
    disposeWeights(record.weights);
    record.stats.clear();
  }
  const out = input.replace(/\.block$/, ".compressed");
  await o.submitter.run({ args: ["gradot-block", "--input", input, "--out", out], inputs: [input], outputs: [out] });
  const { weights, compression } = await readCompressedBlock(out);
  await Promise.all([rm(input, { force: true }), rm(out, { force: true })]); // read back: spent
  return { model: record.model, index: record.index, role: record.role, weights, drd: new Map(), compression };
}

/** The operator of the module doc. */
export function queuedCompression(options: QueuedCompressionOptions): OperatorFunction<StatsRecord, ScoredBlockRecord> {
  return (source) =>
    source.pipe(
      map((record): Observable<ScoredBlockRecord> => {
        if (record.role !== "middle") return of(record).pipe(options.local);
        const compressed = compressRemotely(record, options);
        compressed.catch(() => {}); // reported when its turn comes (concatAll), not as unhandled before
        return from(compressed);
      }),
      concatAll(),
    );
}
