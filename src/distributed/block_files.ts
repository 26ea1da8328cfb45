/**
 * A GradOT block as files on shared storage, for scoring and compressing it
 * on another machine (docs/DISTRIBUTED.md "Many machines"): the block's
 * weights and KFAC factors (and a ReLU MLP's channel products) go to a
 * `.block` file named by the SHA-256 of its bytes, the compressed weights
 * come back in a `.compressed` file. Both are msgpack (`Packr` with
 * `moreTypes`, so Float32Arrays and Float64Arrays keep their bytes), and
 * both are written atomically (src/io/atomic.ts), so a file that exists is
 * complete: a job that finds its output reuses it.
 *
 * Factors travel as they are held (`SymmetricFactor.held`), so the worker's
 * numbers are the one-process build's, bit for bit.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { writeFileAtomic } from "../io/atomic.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { CompressedPart } from "../compress/budget.ts";
import type { SelectionKind } from "../compress/select.ts";
import type { Tensor } from "@tensorflow/tfjs";
import type { WeightMap } from "../model/types.ts";
import type { AdapterSplit, BlockRole, CompressionNote, StatsRecord } from "../records/records.ts";
import type { ChannelProducts } from "../stats/channel_products.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import { type HeldFactor, heldFactor } from "../stats/symmetric_factor.ts";
import { tf } from "../tensor/backend.ts";

/**
 * The msgpack codec of the queue's files on shared storage (`.block`,
 * `.compressed`, and the calibration slices' files of
 * src/distributed/slice_files.ts): plain maps, Float32Arrays and
 * Int32Arrays keeping their bytes (docs/DISTRIBUTED.md "Many machines").
 */
export const jobPackr = new Packr({ useRecords: false, moreTypes: true });

/** A tensor as it is stored: its shape and float32 values. */
export interface StoredTensor {
  shape: number[];
  data: Float32Array;
}

/** The settings a block is scored and compressed with (GradOT's, docs/GRADOT.md). */
export interface BlockSettings {
  ratio: number;
  attnShare?: number;
  lambdaAttn: number;
  lambdaMlp: number;
  keepTopFraction: number;
  /** GCS, or the magnitude ablation (docs/METHOD.md §2 "Ablations"). */
  selection: SelectionKind;
  /** The one part compressed, when only one is. */
  only?: CompressedPart;
  /**
   * The parts of the block this job scores and compresses (attention linears
   * by name, `mlp` for the MLP's channels: src/distributed/block_parts.ts);
   * default every part. The others pass through as they came.
   */
  parts?: string[];
}

/** What a `.block` file holds: everything `offtune gradot-block` needs to compress one block. */
export interface BlockJob {
  /** The original checkpoint's directory (on shared storage) and its source hash, checked when opened. */
  model: { dir: string; sourceHash: string; split: AdapterSplit };
  index: number;
  role: BlockRole;
  settings: BlockSettings;
  weights: WeightMap;
  stats: Map<string, KfacFactors>;
  /** The block's ReLU-MLP channel products, when it has them (`StatsRecord.channelProducts`). */
  channelProducts?: ChannelProducts;
}

/** What a `.compressed` file holds: the block's compressed weights and what they were compressed to. */
export interface CompressedBlock {
  index: number;
  weights: WeightMap;
  compression: CompressionNote;
}

/** How {@link blockJobValue} takes a weight's values: by default a copy off the tensor heap. */
export type WeightValues = (name: string, tensor: Tensor) => Float32Array;

const copiedValues: WeightValues = (_, tensor) => tensor.dataSync() as Float32Array;

/** A weight map's tensors as plain values (`valuesOf` each: copies by default), in name order. */
function storeWeights(weights: WeightMap, valuesOf: WeightValues = copiedValues): Record<string, StoredTensor> {
  const names = [...weights.keys()].sort();
  return Object.fromEntries(names.map((n) => {
    const t = weights.get(n)!;
    return [n, { shape: [...t.shape], data: valuesOf(n, t) }];
  }));
}

function loadWeights(stored: Record<string, StoredTensor>): WeightMap {
  return new Map(Object.entries(stored).map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
}

const storeFactor = (f: { held: HeldFactor }): HeldFactor => f.held;

/** A block's KFAC factors by linear as plain values (each factor as it is held; `g` when summed), in the block's linear order. */
export type StatsValue = Record<string, { A: HeldFactor; G: HeldFactor; g?: Matrix; tokens: number }>;

/** `stats` as plain values: its arrays, not copies (a worker thread can be handed them without another copy). */
export function statsValue(stats: Map<string, KfacFactors>): StatsValue {
  return Object.fromEntries([...stats.entries()].map(([name, f]) => [name, {
    A: storeFactor(f.A),
    G: storeFactor(f.G),
    ...(f.g ? { g: f.g } : {}),
    tokens: f.tokens,
  }]));
}

/** The factors of {@link statsValue}'s values. */
export function statsFromValue(raw: StatsValue): Map<string, KfacFactors> {
  return new Map(Object.entries(raw).map(([name, f]) => [name, {
    A: heldFactor(f.A),
    G: heldFactor(f.G),
    ...(f.g ? { g: f.g } : {}),
    tokens: f.tokens,
  }]));
}

/** A block job as plain values (tensors as {@link StoredTensor}s, factors as they are held): what a `.block` file packs. */
export interface BlockJobValue extends Omit<BlockJob, "weights" | "stats"> {
  weights: Record<string, StoredTensor>;
  stats: StatsValue;
}

/**
 * `record`'s weights, factors and channel products, with the model and
 * settings, as plain values; the arrays are the record's statistics (not
 * copies) and copies of its weights (or `valuesOf` them: views of the
 * block's publication on a pool), so a worker thread can be handed them
 * without another copy.
 */
export function blockJobValue(record: StatsRecord, model: BlockJob["model"], settings: BlockSettings, valuesOf?: WeightValues): BlockJobValue {
  const { channelProducts } = record;
  return {
    model,
    index: record.index,
    role: record.role,
    settings,
    weights: storeWeights(record.weights, valuesOf),
    stats: statsValue(record.stats),
    ...(channelProducts ? { channelProducts } : {}),
  };
}

/**
 * Writes `record` ({@link blockJobValue}) to `<dir>/<sha256>.block`
 * (atomically; an existing file of the same name has the same bytes and is
 * kept) and returns its path.
 */
export async function writeBlockJob(dir: string, record: StatsRecord, model: BlockJob["model"], settings: BlockSettings): Promise<string> {
  const bytes = jobPackr.pack(blockJobValue(record, model, settings));
  const path = join(dir, `${createHash("sha256").update(bytes).digest("hex")}.block`);
  mkdirSync(dir, { recursive: true });
  await writeFileAtomic(path, bytes);
  return path;
}

/** The block job of {@link blockJobValue}'s values; the weights become tensors the caller owns. */
export function blockJobFromValue(raw: BlockJobValue): BlockJob {
  return { ...raw, weights: loadWeights(raw.weights), stats: statsFromValue(raw.stats) };
}

/** Reads a `.block` file written by {@link writeBlockJob}; the weights become tensors the caller owns. */
export async function readBlockJob(path: string): Promise<BlockJob> {
  return blockJobFromValue(jobPackr.unpack(await readFile(path)) as BlockJobValue);
}

/** A compressed block as plain values (its tensors copied off the tensor heap). */
export interface CompressedBlockValue {
  index: number;
  weights: Record<string, StoredTensor>;
  compression: CompressionNote;
}

/** {@link CompressedBlock} as plain values: what a `.compressed` file packs. */
export function compressedBlockValue(block: CompressedBlock): CompressedBlockValue {
  return { index: block.index, weights: storeWeights(block.weights), compression: block.compression };
}

/** The compressed block of {@link compressedBlockValue}'s values; the weights become tensors the caller owns. */
export function compressedBlockFromValue(raw: CompressedBlockValue): CompressedBlock {
  return { index: raw.index, weights: loadWeights(raw.weights), compression: raw.compression };
}

/** Writes a compressed block to `path` atomically. */
export async function writeCompressedBlock(path: string, block: CompressedBlock): Promise<void> {
  await writeFileAtomic(path, jobPackr.pack(compressedBlockValue(block)));
}

/** Reads a `.compressed` file; the weights become tensors the caller owns. */
export async function readCompressedBlock(path: string): Promise<CompressedBlock> {
  return compressedBlockFromValue(jobPackr.unpack(await readFile(path)) as CompressedBlockValue);
}
