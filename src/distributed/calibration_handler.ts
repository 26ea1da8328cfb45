/**
 * The requests of a data-parallel GradOT build's calibration pool and what
 * serves them (docs/DISTRIBUTED.md "All cores of one machine"; main side:
 * src/distributed/calibration_pool.ts), in a worker thread
 * (src/distributed/calibration_worker.ts) or in the building thread, which
 * is one of the pool's slots. It runs the calibration passes' chunk functions (src/model/calibration_chunk.ts)
 * on the chunks it is sent, sums the KFAC statistics of the linears it owns
 * (`BlockKfacSums`, chunk by chunk in the order sent), scores and compresses whole blocks
 * (`gradotCompression`) and writes the outer shard (`writeOuterShardFile`), the
 * same code the building thread runs alone, so a chunk's, a block's or a
 * shard's bytes do not depend on the thread that made them.
 *
 * A block's weights arrive as {@link SharedWeights}; the worker keeps the
 * tensors of the last block it was sent and rebuilds them when another
 * comes, so one block is resident per worker.
 *
 * @module
 */
import { lastValueFrom, of } from "rxjs";
import {
  type BlockJob,
  blockJobFromValue,
  type BlockJobValue,
  compressedBlockValue,
  type CompressedBlockValue,
  statsValue,
  type StatsValue,
} from "./block_files.ts";
import { BlockKfacSums } from "../operators/accumulate_kfac.ts";
import type { Reply } from "./worker_pool.ts";
import { movableBuffers, type SharedWeights, sharedWeightMap } from "./shared_weights.ts";
import { backwardChunk, type ChunkGradient, forwardChunk, headChunk } from "../model/calibration_chunk.ts";
import { architectureFor } from "../model/registry.ts";
import { openModel } from "../model/model_handle.ts";
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { disposeWeights } from "../model/weights.ts";
import { gradotCompression } from "../operators/gradot_compression.ts";
import type { AdapterSplit, LinearChunkRecord, ModelHandle, StreamedVocabulary } from "../records/records.ts";
import { initBackend, tf } from "../tensor/backend.ts";
import type { Matrix } from "../linalg/matrix.ts";
import { writeOuterShardFile } from "../operators/write_shards.ts";
import type { ShardDtype, ShardMeta, ShardTensor } from "../io/shard_schema.ts";
import { writeShardFile } from "../io/shard_writer.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";
import { adoptScratch } from "../linalg/scratch_arrays.ts";
import { type ChunkPlace, readChunkAt, writeChunkAt } from "../io/activation_store.ts";

/** A chunk of `[n, T, d]` values. */
interface Chunk {
  n: number;
  t: number;
  data: Float32Array;
}

/** A chunk of `[n, T, d]` values in the activation store, which the slot reads itself. */
interface StoredChunk {
  n: number;
  t: number;
  place: ChunkPlace;
}

/** Requests the calibration pool sends a worker. */
export type CalibrationRequest =
  | {
    kind: "init";
    config: Record<string, unknown>;
    split: AdapterSplit;
    backend: string | undefined;
    outer: SharedWeights;
    /** The checkpoint whose head matrix the head streams, when the building thread streams it too. */
    streamedHead?: string;
    /** That checkpoint's hash, known to the building thread: not computed again. */
    sourceHash?: string;
    /**
     * This thread's slot only (never sent to a worker): the building thread's
     * open vocabulary rows, read instead of opening `streamedHead` again, whose
     * reads would wait on the forward's blocks in this thread.
     */
    vocabulary?: StreamedVocabulary;
  }
  /** `targets`: where each output goes in the activation store's files (`[n, T, d]`, then `[n, T, out]` per linear), written there by the slot. */
  | { kind: "forward"; block: SharedWeights; x: StoredChunk; linears: string[]; targets: ChunkPlace[] }
  | { kind: "head"; hidden: Chunk; ids: Int32Array }
  /** `out`: where the input gradient `[n, T, d]` goes in the activation store, written there by the slot; absent where it is not kept. */
  | { kind: "backward"; block: SharedWeights; index: number; probes: boolean; x: StoredChunk; dy: StoredChunk; replay: Array<{ name: string; chunk: StoredChunk }>; out?: ChunkPlace }
  | { kind: "compress"; job: BlockJobValue }
  /** The emulator's outer shard, of the slot's outer weights and vocabulary, written to `path` (`writeOuterShardFile`). */
  | { kind: "outer"; path: string; meta: ShardMeta; dtype: ShardDtype }
  /** A block's shard of `tensors`, written to `path` (`writeShardFile`; `WriteShardsOptions.blocksElsewhere`). */
  | { kind: "shard"; path: string; meta: ShardMeta; dtype: ShardDtype; tensors: ShardTensor[] }
  /**
   * One chunk of the linears this worker sums (`kfacOwners`), in block order;
   * a linear sharing an input has no `x`. Once added, the chunk's arrays go
   * to this slot's scratch pool.
   */
  | { kind: "kfac"; linears: Array<Omit<LinearChunkRecord, "kind" | "x"> & { x?: Matrix }> }
  | { kind: "kfac-finalize"; index: number }
  /** Releases what the slot holds (`closeCalibration`): this thread's slot, when its pool closes. */
  | { kind: "close" };

/**
 * What a worker answers, by request kind, with the seconds it spent serving
 * the request: the pool weighs each slot's queued work by them
 * (`CalibrationPool`).
 */
export type CalibrationReply = CalibrationAnswer & { seconds: number };

/** A reply's value by request kind. */
type CalibrationAnswer =
  | { kind: "ready" }
  | { kind: "forward" }
  | { kind: "head"; lossSum: number; dHidden: Float32Array }
  | { kind: "backward"; linears: Array<{ name: string; x?: Matrix; gamma: Matrix; sharesInputWith?: string }> }
  | { kind: "compress"; block: CompressedBlockValue }
  | { kind: "outer"; bytes: number; sha256: string; tensors: Array<{ name: string; shape: number[] }> }
  | { kind: "shard"; bytes: number; sha256: string }
  | { kind: "kfac" }
  | { kind: "kfac-finalize"; stats: StatsValue }
  | { kind: "close" };

interface WorkerModel {
  arch: Architecture;
  cfg: ModelConfig;
  split: AdapterSplit;
  outer: WeightMap;
  /** The checkpoint opened for its streamed vocabulary, if the head streams it and was not handed `vocabulary`. */
  streamed?: ModelHandle;
  /** The streamed vocabulary's rows (the head's among them), if the head streams it. */
  vocabulary?: StreamedVocabulary;
}

/** What one slot holds between requests. */
interface SlotState {
  model?: WorkerModel;
  /** The tensors of the last block sent. */
  resident?: { id: number; weights: WeightMap };
  /** The KFAC sums of the linears this slot owns, for the block in flight. */
  kfac: BlockKfacSums;
}

/** The slot's tensors of `shared` (the block before them disposed). */
function blockWeights(state: SlotState, shared: SharedWeights): WeightMap {
  if (state.resident?.id !== shared.id) {
    if (state.resident) disposeWeights(state.resident.weights);
    state.resident = undefined;
    state.resident = { id: shared.id, weights: sharedWeightMap(shared) };
  }
  return state.resident.weights;
}

const tensorOf = (c: Chunk) => tf.tensor3d(c.data, [c.n, c.t, c.data.length / (c.n * c.t)]); // [n, T, d]

/** The values of `t` (disposed) as an array this thread owns. */
function valuesOf(t: tf.Tensor): Float32Array {
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/** A stored chunk read from its file straight into a tensor's heap memory, `[n, T, width]`. */
const storedTensor = (c: StoredChunk) => filledTensor([c.n, c.t, c.place.values / (c.n * c.t)], (out) => readChunkAt(c.place, out));

/**
 * A handle carrying what scoring and compression read of a model (its
 * architecture, config and split; `src/compress/budget_plan.ts`); a worker
 * has no checkpoint open, so it loads no weights.
 */
function compressionModel(job: BlockJob, m: WorkerModel): ModelHandle {
  return {
    source: job.model.dir,
    arch: m.arch,
    cfg: m.cfg,
    split: m.split,
    blockIndices: Array.from({ length: m.cfg.layers }, (_, i) => i),
    sourceHash: job.model.sourceHash,
    outer: new Map(),
    loadBlock: () => Promise.reject(new Error("A calibration worker loads no blocks")),
    close: () => Promise.resolve(),
  };
}

/**
 * Whether a slot serves `request` ahead of the others waiting: a block's KFAC
 * sums and their finalize, which its compression waits for, go before the
 * chunks and compressions posted earlier (each kind keeps its order, so the
 * sums are added in chunk order). Behind the compressions they came last:
 * on a 2-slot OPT-125M build the last block's factors were done 0.6–0.8 s
 * after its last chunk (docs/DISTRIBUTED.md "Where 2 slots wait").
 */
export function servedFirst(request: CalibrationRequest): boolean {
  return request.kind === "kfac" || request.kind === "kfac-finalize";
}

/**
 * A slot's request handler, with its own state: it serves one request of
 * the pool at a time ({@link servedFirst} ahead of the rest); a reply's
 * `transfer` lists the buffers a worker moves back to the building thread.
 */
export function calibrationHandler(): (request: CalibrationRequest) => Promise<Reply<CalibrationReply>> {
  const state: SlotState = { kfac: new BlockKfacSums() };
  return async (request) => {
    const started = performance.now();
    const { value, transfer } = await handle(state, request);
    return { value: { ...value, seconds: (performance.now() - started) / 1000 }, ...(transfer ? { transfer } : {}) };
  };
}

async function handle(state: SlotState, request: CalibrationRequest): Promise<Reply<CalibrationAnswer>> {
  if (request.kind === "close") {
    await release(state);
    return { value: { kind: "close" } };
  }
  if (request.kind === "init") {
    await initBackend(request.backend, true);
    const arch = architectureFor(String(request.config.model_type));
    const streamed = request.streamedHead === undefined || request.vocabulary
      ? undefined
      : await openModel(request.streamedHead, { split: request.split, streamVocabulary: true, scanNonFinite: false, sourceHash: request.sourceHash });
    const vocabulary = request.vocabulary ?? streamed?.vocabulary;
    state.model = { arch, cfg: arch.parseConfig(request.config), split: request.split, outer: sharedWeightMap(request.outer), streamed, vocabulary };
    return { value: { kind: "ready" } };
  }
  const { model, kfac } = state;
  if (!model) throw new Error(`Calibration worker received "${request.kind}" before "init"`);
  const { arch, cfg } = model;
  switch (request.kind) {
    case "forward": {
      const x = storedTensor(request.x);
      const outputs = forwardChunk(arch, cfg, blockWeights(state, request.block), x, request.linears); // [n, T, d], then [n, T, out] per linear
      x.dispose();
      try {
        if (outputs.length !== request.targets.length) {
          throw new Error(`Calibration worker: a forward chunk has ${outputs.length} outputs and ${request.targets.length} places to write them`);
        }
        // Straight from heap views: nothing below makes a tensor.
        outputs.forEach((y, k) => writeChunkAt(request.targets[k], peekValues(y)));
      } finally {
        tf.dispose(outputs);
      }
      return { value: { kind: "forward" } };
    }
    case "head": {
      const hidden = tensorOf(request.hidden);
      const { lossSum, dHidden } = headChunk(arch, cfg, model.outer, hidden, request.ids, model.vocabulary?.head);
      hidden.dispose();
      const values = valuesOf(dHidden);
      return { value: { kind: "head", lossSum, dHidden: values }, transfer: movableBuffers(values) };
    }
    case "backward": {
      const x = storedTensor(request.x); // [n, T, d]
      const dy = storedTensor(request.dy); // [n, T, d]
      const replay = request.replay.length > 0 ? new Map(request.replay.map(({ name, chunk }) => [name, storedTensor(chunk)])) : undefined; // [n, T, out] each
      let gradient: ChunkGradient;
      try {
        gradient = backwardChunk(arch, cfg, blockWeights(state, request.block), x, dy, request.probes, request.index, replay);
      } finally {
        tf.dispose([x, dy, ...(replay?.values() ?? [])]);
      }
      const { dx, linears } = gradient;
      try {
        if (request.out) writeChunkAt(request.out, peekValues(dx)); // [n, T, d], from a heap view: nothing between makes a tensor
      } finally {
        dx.dispose();
      }
      return { value: { kind: "backward", linears }, transfer: movableBuffers(linears) };
    }
    case "kfac": {
      const inputs = new Map<string, Matrix>(); // by the linear that brought it
      for (const l of request.linears) {
        const x = l.x ?? inputs.get(l.sharesInputWith ?? "");
        if (!x) throw new Error(`Calibration worker: "${l.linear.name}" came without its input`);
        inputs.set(l.linear.name, x);
        kfac.add({ ...l, x });
      }
      // Added (a row-held sum keeps copies): the arrays are this thread's to reuse.
      adoptScratch(...request.linears.flatMap((l) => [...(l.x ? [l.x.data] : []), l.gamma.data]));
      return { value: { kind: "kfac" } };
    }
    case "kfac-finalize": {
      const stats = statsValue(kfac.finalize(request.index));
      return { value: { kind: "kfac-finalize", stats }, transfer: movableBuffers(stats) };
    }
    case "outer":
      return { value: { kind: "outer", ...writeOuterShardFile(model, request.path, request.meta, request.dtype) } };
    case "shard": {
      const { bytes, sha256 } = writeShardFile(request.path, request.meta, request.tensors, { dtype: request.dtype });
      return { value: { kind: "shard", bytes, sha256 } };
    }
    case "compress": {
      const job = blockJobFromValue(request.job);
      const { channelProducts } = job;
      const record = { model: compressionModel(job, model), index: job.index, role: job.role, weights: job.weights, stats: job.stats, ...(channelProducts ? { channelProducts } : {}) };
      const scored = await lastValueFrom(of(record).pipe(gradotCompression(job.settings)));
      try {
        const block = compressedBlockValue({ index: scored.index, weights: scored.weights, compression: scored.compression });
        return { value: { kind: "compress", block }, transfer: movableBuffers(block) };
      } finally {
        disposeWeights(scored.weights);
      }
    }
  }
}

/**
 * Releases what a slot holds (the resident block, the outer weights, the
 * streamed-head checkpoint, the KFAC sums), so the building thread, when it
 * served requests, ends with no tensor of them.
 */
async function release(state: SlotState): Promise<void> {
  if (state.resident) disposeWeights(state.resident.weights);
  state.resident = undefined;
  if (state.model) disposeWeights(state.model.outer);
  await state.model?.streamed?.close();
  state.model = undefined;
  state.kfac.clear();
}
