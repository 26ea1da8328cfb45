/**
 * `offtune gradot-block`'s body: scores and compresses one GradOT middle
 * block from its `.block` file and writes the compressed block
 * (docs/DISTRIBUTED.md "Many machines"). The job a worker runs for each
 * middle block of `build-emulator --queue`; the chain is the one-process
 * build's (`gradotCompression`), so the numbers are the same.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { lastValueFrom, of } from "rxjs";
import { readBlockJob, writeCompressedBlock } from "../distributed/block_files.ts";
import { openModel } from "../model/model_handle.ts";
import { disposeWeights } from "../model/weights.ts";
import { gradotCompression } from "../operators/gradot.ts";

/**
 * Compresses the block of `input` into `out`; an existing `out` is a
 * finished run's complete output (written atomically) and is kept.
 *
 * @returns whether it compressed (false: `out` was there)
 * @throws Error naming the model directory when its weights are not the ones the block was cut from
 */
export async function runBlockJob(input: string, out: string): Promise<boolean> {
  if (existsSync(out)) return false;
  const job = await readBlockJob(input);
  const model = await openModel(job.model.dir, { split: job.model.split, streamVocabulary: true, scanNonFinite: false });
  try {
    if (model.sourceHash !== job.model.sourceHash) {
      throw new Error(`The model "${job.model.dir}" is not the checkpoint "${input}" was cut from (its source hash differs)`);
    }
    const { channelProducts } = job;
    const record = { model, index: job.index, role: job.role, weights: job.weights, stats: job.stats, ...(channelProducts ? { channelProducts } : {}) };
    const scored = await lastValueFrom(of(record).pipe(gradotCompression(job.settings)));
    try {
      await writeCompressedBlock(out, { index: scored.index, weights: scored.weights, compression: scored.compression });
    } finally {
      disposeWeights(scored.weights);
    }
    return true;
  } finally {
    await model.close();
  }
}
