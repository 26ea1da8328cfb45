/**
 * Offsite-Tuning's training-free uniform LayerDrop emulator, the OT†
 * baseline GradOT is compared against (docs/METHOD.md §3, "OT† (training-free
 * LayerDrop)"; Xiao et al. 2023 without distillation): the emulator keeps
 * the adapter blocks and every k-th middle block of the original model,
 * spread uniformly, and drops the other middle blocks; everything it keeps
 * (adapter, middle and outer weights) is copied unchanged. No calibration.
 *
 * The package names its blocks by their original indices and lists them in
 * the manifest's `blockIndices` (docs/SHARDS.md), so the emulator runs the
 * kept blocks in order and an adapter tuned on it plugs into the original
 * model's bottom and top blocks.
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * await lastValueFrom(buildLayerDropEmulator(model, { ratio: 0.5, out: "out/layerdrop" }));
 * ```
 *
 * @module
 */
import { defer, filter, type MonoTypeOperatorFunction, type Observable, tap } from "rxjs";
import type { ShardDtype } from "../io/shard_schema.ts";
import { type AdapterSplit, type BlockRecord, blockRole, everyBlock, type ModelHandle, type ShardRecord } from "../records/records.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";
import { writeShards } from "./write_shards.ts";

/** The method name a LayerDrop emulator's manifest, shards and run results carry. */
export const LAYERDROP_METHOD = "ot-layerdrop";

/**
 * How many of `middle` blocks an emulator that keeps whole blocks holds so
 * that its middle has `ratio` of the original's blocks (and parameters, the
 * blocks being alike): `K = round(ratio · M)`, at least one, since an
 * emulator without a middle is no emulator (beyond docs/METHOD.md). LayerDrop
 * keeps K blocks, CRaSh K groups' blocks (docs/METHOD.md §3), so both match
 * GradOT's size at the same ratio.
 *
 * @param method names the method in errors
 * @throws RangeError when `ratio` is not in (0, 1] or `middle` is not a positive integer
 */
export function keptMiddleCount(middle: number, ratio: number, method = "LayerDrop"): number {
  if (!(Number.isFinite(ratio) && ratio > 0 && ratio <= 1)) {
    throw new RangeError(`${method} ratio must be in (0, 1] (the fraction of middle blocks kept), got ${ratio}`);
  }
  if (!Number.isInteger(middle) || middle < 1) throw new RangeError(`${method} needs at least one middle block, got ${middle}`);
  return Math.max(1, Math.round(ratio * middle));
}

/**
 * Positions (in `0..middle-1`) of the middle blocks uniform LayerDrop keeps:
 * {@link keptMiddleCount} `K` blocks at `round(i · M / K)`, `i = 0..K-1`,
 * i.e. every k-th block when K divides M (ratio 0.5 keeps the first of every
 * pair).
 *
 * @throws RangeError when `ratio` is not in (0, 1] or `middle` is not a positive integer
 */
export function keptMiddlePositions(middle: number, ratio: number): number[] {
  const kept = keptMiddleCount(middle, ratio);
  return Array.from({ length: kept }, (_, i) => Math.round((i * middle) / kept));
}

/**
 * The original indices of the blocks a LayerDrop emulator of a model with
 * `layers` blocks runs, in order: the adapter blocks of `split` and the kept
 * middle blocks ({@link keptMiddlePositions}).
 */
export function layerDropBlocks(layers: number, split: AdapterSplit, ratio: number): number[] {
  const kept = new Set(keptMiddlePositions(layers - split.bottom - split.top, ratio).map((p) => split.bottom + p));
  return everyBlock(layers).filter((i) => blockRole(i, layers, split) === "adapter" || kept.has(i));
}

/** Passes on the records of the blocks in `keep` and releases the weights of the others. */
export function dropBlocks(keep: readonly number[]): MonoTypeOperatorFunction<BlockRecord> {
  const kept = new Set(keep);
  return filter((record) => {
    if (kept.has(record.index)) return true;
    disposeWeights(record.weights);
    return false;
  });
}

/** Everything {@link buildLayerDropEmulator} needs besides the model. */
export interface LayerDropOptions {
  /** Fraction of the middle blocks kept, in (0, 1]. */
  ratio: number;
  /** Package directory to write. */
  out: string;
  /** Stored element type (default float32). */
  dtype?: ShardDtype;
  /** The tokenizer.json the package carries (default: the model directory's own; `writeShards`). */
  tokenizer?: string;
  /** Receives the seconds of each block's read and write, and a progress mark per shard written. */
  events?: StageEvents;
  /** Stops the build at the next block once aborted (src/cli/interrupt.ts); the package is not written. */
  signal?: AbortSignal;
}

/**
 * Builds the LayerDrop emulator package of `model` in `options.out`:
 * read → drop → shards. The dropped blocks are read too and released at
 * once (one block resident at a time, as in every pipeline). The manifest
 * records method {@link LAYERDROP_METHOD} with settings `ratio` and
 * `keptMiddle` (the original indices of the kept middle blocks); a bad
 * ratio is the observable's error.
 */
export function buildLayerDropEmulator(model: ModelHandle, options: LayerDropOptions): Observable<ShardRecord> {
  return defer(() => {
    const blockIndices = layerDropBlocks(model.cfg.layers, model.split, options.ratio);
    const keptMiddle = blockIndices.filter((i) => blockRole(i, model.cfg.layers, model.split) === "middle");
    const total = blockIndices.length + 1; // + the outer weights
    let written = 0;
    return readCheckpoint(model, options.events, options.signal).pipe(
      dropBlocks(blockIndices),
      writeShards(options.out, {
        method: LAYERDROP_METHOD,
        settings: { ratio: options.ratio, keptMiddle },
        dtype: options.dtype,
        blockIndices,
        tokenizer: options.tokenizer,
        events: options.events,
      }),
      tap((shard) => options.events?.next({ stage: "write", done: ++written, total, unit: "shards", seconds: 0, detail: `wrote ${shard.file}` })),
    );
  });
}
