/**
 * The CRaSh emulator (Zhang et al. 2023; docs/METHOD.md §3 "CRaSh"), a
 * training-free baseline GradOT is compared against: **cluster** the middle
 * blocks into `K = round(ratio · M)` groups of consecutive blocks by the
 * linear CKA of their outputs on calibration text, **remove** all but the
 * first block of each group, and **share** that block: it runs at every
 * position of its group, so the emulator keeps the original depth.
 *
 * Two passes over the checkpoint: the calibration forward (`calibrateForward`
 * → `blockSimilarity`, the clustering), then the blocks to keep
 * (`readCheckpoint` → `dropBlocks` → `writeShards`). The package stores each
 * kept block once; its manifest's `blockIndices` names the block each
 * position runs, a shared block repeated at each of its positions
 * (format version 3, docs/SHARDS.md), so `openPackage` runs it at every
 * one. Adapter blocks and outer weights are copied unchanged and never
 * shared, so an adapter tuned on it plugs into the original model.
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * await lastValueFrom(buildCrashEmulator(model, { ratio: 0.5, calibration, out: "out/crash" }));
 * ```
 *
 * @module
 */
import { concatMap, defer, type Observable, tap } from "rxjs";
import { clusterAdjacent } from "../compress/contiguous_clusters.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { type AdapterSplit, blockRole, type CalibrationSet, everyBlock, type ModelHandle, type ShardRecord } from "../records/records.ts";
import { blockSimilarity } from "./block_similarity.ts";
import { calibrateForward } from "./calibrate_forward.ts";
import type { GradotOptions } from "./gradot.ts";
import { dropBlocks, keptMiddleCount } from "./layer_drop.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import { writeShards } from "./write_shards.ts";

/** The method name a CRaSh emulator's manifest, shards and run results carry. */
export const CRASH_METHOD = "crash";

/**
 * CRaSh's groups of middle blocks (original indices, consecutive, in
 * order): `clusterAdjacent` of their CKA `[M, M]` into
 * {@link keptMiddleCount} groups, so the emulator matches LayerDrop and
 * GradOT in size at the same ratio.
 *
 * @param middle the original indices of the blocks `cka` compares
 * @throws RangeError when `ratio` is not in (0, 1] or `middle` is empty
 */
export function crashGroups(cka: ArrayLike<number>, middle: readonly number[], ratio: number): number[][] {
  const k = keptMiddleCount(middle.length, ratio, "CRaSh");
  return clusterAdjacent(cka, middle.length, k).map((group) => group.map((p) => middle[p]));
}

/**
 * The block each position `0..layers-1` of a CRaSh emulator runs: its own
 * for an adapter block, the first block of its group for a middle one
 * (that block is kept, the others removed and replaced by it).
 *
 * @throws Error when `groups` do not cover exactly the middle blocks of `split`
 */
export function sharedBlockIndices(layers: number, split: AdapterSplit, groups: readonly (readonly number[])[]): number[] {
  const runs = new Map(groups.flatMap((group) => group.map((i) => [i, group[0]] as const)));
  const middle = everyBlock(layers).filter((i) => blockRole(i, layers, split) === "middle");
  if (runs.size !== middle.length || middle.some((i) => !runs.has(i))) {
    throw new Error(`CRaSh groups ${JSON.stringify(groups)} do not cover the middle blocks ${middle.join(", ")} of split ${split.bottom}+${split.top}`);
  }
  return everyBlock(layers).map((i) => runs.get(i) ?? i);
}

/**
 * Everything {@link buildCrashEmulator} needs besides the model: GradOT's
 * calibration, output and storage options (`calibration` is what the
 * similarities are measured on), and the ratio and events below.
 */
export interface CrashOptions extends Pick<GradotOptions, "calibration" | "out" | "chunk" | "dtype" | "tokenizer" | "signal"> {
  /** Fraction of the middle blocks kept (one per group), in (0, 1]. */
  ratio: number;
  /**
   * The build's stage events: the timings of every stage (`read`,
   * `forward`, `score` for the CKA, `write`) and a progress mark per block
   * forwarded, one when the CKA is done and one per shard written
   * (`done`/`total` in steps).
   */
  events?: StageEvents;
}

/** The settings recorded in the manifest and every shard: ratio, groups, kept blocks, calibration size. */
export function crashSettings(ratio: number, groups: readonly (readonly number[])[], calibration: CalibrationSet): Record<string, unknown> {
  return {
    ratio,
    groups: groups.map((g) => [...g]),
    keptMiddle: groups.map((g) => g[0]),
    calibration: { sequences: calibration.sequences, length: calibration.length },
  };
}

/**
 * Builds the CRaSh emulator package of `model` in `options.out` (module
 * doc). The manifest records method {@link CRASH_METHOD}, the
 * {@link crashSettings}, and in `extra.cka` the CKA matrix of the middle
 * blocks (rows in their order); its `extra.blocks` lists each stored block
 * once, so parameter counts taken from it count the shared blocks' unique
 * parameters. A bad ratio or a split without middle blocks is the
 * observable's error, before any block is read.
 */
export function buildCrashEmulator(model: ModelHandle, options: CrashOptions): Observable<ShardRecord> {
  return defer(() => {
    const { cfg, split } = model;
    const middle = everyBlock(cfg.layers).filter((i) => blockRole(i, cfg.layers, split) === "middle");
    if (middle.length === 0) {
      throw new Error(`CRaSh needs middle blocks to cluster, but split ${split.bottom}+${split.top} of "${model.source}" (${cfg.layers} blocks) leaves none`);
    }
    const kept = keptMiddleCount(middle.length, options.ratio, "CRaSh");
    const { events, signal, calibration } = options;
    const total = cfg.layers + 1 + (cfg.layers - middle.length + kept) + 1; // forward, CKA, block shards, outer shard
    let done = 0;
    const mark = (stage: "forward" | "score" | "write", extra: { block?: number; detail?: string; tokens?: number } = {}) =>
      events?.next({ stage, done: ++done, total, unit: "steps", seconds: 0, ...extra });
    const tokens = calibration.sequences * calibration.length;
    return readCheckpoint(model, events, signal).pipe(
      calibrateForward({ calibration, chunk: options.chunk, events }),
      tap((r) => mark("forward", { block: r.index, tokens })),
      blockSimilarity({ chunk: options.chunk, events }),
      tap(() => mark("score", { detail: "CKA of the middle blocks" })),
      concatMap((similarity) => {
        const groups = crashGroups(similarity.cka, similarity.blocks, options.ratio);
        const blockIndices = sharedBlockIndices(cfg.layers, split, groups);
        const m = similarity.blocks.length;
        const cka = Array.from({ length: m }, (_, i) => [...similarity.cka.subarray(i * m, (i + 1) * m)]);
        return readCheckpoint(model, events, signal).pipe(
          dropBlocks(blockIndices),
          writeShards(options.out, {
            method: CRASH_METHOD,
            settings: crashSettings(options.ratio, groups, calibration),
            extra: { cka },
            dtype: options.dtype,
            blockIndices,
            tokenizer: options.tokenizer,
            events,
          }),
          tap((shard) => mark("write", { detail: `wrote ${shard.file}` })),
        );
      }),
    );
  });
}
