/**
 * `offtune gradot-slice`'s body: one calibration slice of a queued GradOT
 * build (docs/DISTRIBUTED.md "Calibration slices"). It runs the streamed
 * calibration forward, the head and the backward of the one-process build
 * (`calibrateForward`, `calibrateBackward`: one block resident, activations
 * on local disk) over the slice's sequences only, with the build's chunk
 * sizes, and writes what KFAC needs of each middle block and chunk, and the
 * head chunks' summed losses, to files on shared storage
 * (src/distributed/slice_files.ts). The slice's bounds are bounds of both
 * chunkings, so every chunk's bytes are those one process computes.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { sequenceChunks } from "../io/activation_store.ts";
import type { ChunkLinear } from "../model/calibration_chunk.ts";
import { openModel } from "../model/model_handle.ts";
import { disposeWeights } from "../model/weights.ts";
import { calibrateBackward } from "../operators/calibrate_backward.ts";
import { calibrateForward } from "../operators/calibrate_forward.ts";
import { readCheckpoint } from "../operators/read_checkpoint.ts";
import type { CalibrationEvent, LinearChunkRecord } from "../records/records.ts";
import { readSliceJob, sliceChunkFile, sliceLossFile, writeSliceChunk, writeSliceLoss } from "../distributed/slice_files.ts";

/** A chunk record as the backward's `ChunkLinear` (the inverse of `chunkRecords`): a shared input is stored once, by its first reader. */
function chunkLinear(record: LinearChunkRecord): ChunkLinear {
  const { name } = record.linear;
  return record.sharesInputWith
    ? { name, gamma: record.gamma, sharesInputWith: record.sharesInputWith }
    : { name, x: record.x, gamma: record.gamma };
}

/**
 * Runs the slice of `.slice` file `input`, writing its files into the
 * directory `out` (created). Files of an earlier, killed run of the job are
 * overwritten with the same bytes.
 *
 * @throws Error naming the model directory when its checkpoint is not the one the build opened, or the block when its chunks came short
 */
export async function runSliceJob(input: string, out: string): Promise<void> {
  const job = await readSliceJob(input);
  const model = await openModel(job.model.dir, { split: job.model.split, streamVocabulary: job.model.streamVocabulary, scanNonFinite: false });
  try {
    if (model.sourceHash !== job.model.sourceHash) {
      throw new Error(`The model "${job.model.dir}" is not the checkpoint the slice "${input}" was cut for (its source hash differs)`);
    }
    mkdirSync(out, { recursive: true });
    const calibration = { ids: job.ids, sequences: job.to - job.from, length: job.length };
    const perChunk = model.arch.linears(model.cfg).length; // the backward's records per chunk of a middle block
    const chunks = sequenceChunks(calibration.sequences, job.chunk).length;
    let pending: LinearChunkRecord[] = []; // the chunk being gathered
    let written = 0; // chunks of the current block written
    const take = (event: CalibrationEvent) => {
      if (event.kind === "chunk") {
        pending.push(event);
        if (pending.length < perChunk) return;
        writeSliceChunk(sliceChunkFile(out, event.index, written), { block: event.index, chunk: written, linears: pending.map(chunkLinear) });
        written++;
        pending = [];
        return;
      }
      disposeWeights(event.weights);
      if (event.role === "middle" && (written !== chunks || pending.length > 0)) {
        throw new Error(`gradot-slice "${input}": block ${event.index} gave ${written} whole chunks of ${chunks}`);
      }
      written = 0;
    };
    await readCheckpoint(model).pipe(
      calibrateForward({ calibration, chunk: job.chunk, linearOutputs: true }),
      calibrateBackward({ chunk: job.chunk, headChunk: job.headChunk, onHeadSums: (sums) => writeSliceLoss(sliceLossFile(out), sums) }),
    ).forEach(take);
  } finally {
    await model.close();
  }
}
