/**
 * The GradOT emulator builder as one composed operator chain (docs/METHOD.md §2,
 * docs/DESIGN.md "The shape"): read → calibration forward → backward → KFAC →
 * GCS → DRD → SCP → shards. Users who need another order or an extra stage
 * compose the same operators themselves; this is the default composition.
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * await lastValueFrom(buildGradotEmulator(model, { calibration, out: "out/emulator" }));
 * ```
 *
 * @module
 */
import { defer, finalize, type Observable, pipe, tap } from "rxjs";
import { type BudgetOptions, COMPRESSED_PARTS } from "../compress/budget.ts";
import { middleBudget } from "../compress/budget_plan.ts";
import { type SelectionKind, SELECTIONS } from "../compress/select.ts";
import type { ShardDtype } from "../io/shard_schema.ts";
import type { CalibrationSet, ModelHandle, ShardRecord } from "../records/records.ts";
import { accumulateKfac } from "./accumulate_kfac.ts";
import { calibrateBackward } from "./calibrate_backward.ts";
import { BlockPace, calibrateForward } from "./calibrate_forward.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import type { GcsOptions } from "./score_gcs.ts";
import { gradotCompression } from "./gradot_compression.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { writeShards } from "./write_shards.ts";
import type { BlockSettings } from "../distributed/block_files.ts";
import type { JobSubmitter } from "../distributed/job_queue.ts";
import { queuedCompression } from "./queued_compression.ts";
import { queuedCalibration } from "./queued_calibration.ts";
import { StartingPool } from "../distributed/calibration_pool.ts";
import type { CalibrationThreads } from "../distributed/calibration_threads.ts";
import { poolCompression } from "./pool_compression.ts";
import { poolKfac } from "./pool_kfac.ts";

export { gradotCompression };

/** GradOT's defaults: λ by `offtune sweep-gradot` on fixtures/small (docs/GRADOT.md, "The λ sweep"); ratio 0.5 (`src/compress/budget.ts`). */
export const GRADOT_DEFAULTS = { ratio: 0.5, lambdaAttn: 1000, lambdaMlp: 10000, keepTopFraction: 0.05 } as const;

/** Everything {@link buildGradotEmulator} needs besides the model. */
export interface GradotOptions extends BudgetOptions, Partial<GcsOptions> {
  /** The calibration token ids (N sequences of T tokens). */
  calibration: CalibrationSet;
  /** Package directory to write. */
  out: string;
  /** Fraction of components DRD always keeps by singular value (default 0.05). */
  keepTopFraction?: number;
  /**
   * One λ for attention and MLP alike (`--lambda`, the unified-λ ablation of
   * docs/METHOD.md §2 "Ablations"); excludes `lambdaAttn` and `lambdaMlp`.
   */
  lambda?: number;
  /** What ranks components and channels (`--selection`, default `gcs`; docs/METHOD.md §2 "Ablations"). */
  selection?: SelectionKind;
  /** Sequences per calibration chunk. */
  chunk?: number;
  /** Stored element type (default float32). */
  dtype?: ShardDtype;
  /** The tokenizer.json the package carries (default: the model directory's own; `writeShards`). */
  tokenizer?: string;
  /**
   * The build's stage events: every operator's timings (`read` … `write`),
   * the calibration loss (`head`), and a progress mark each time a block
   * passes the forward, the backward, the scoring and the compression
   * ({@link GradotStage}; `done`/`total` in steps of 4 per block, with the
   * calibration tokens of the forward and backward marks).
   */
  events?: StageEvents;
  /** Stops the build at the next block boundary once aborted (src/cli/interrupt.ts). */
  signal?: AbortSignal;
  /** Keeps the build's progress on disk, continuing an earlier run's (src/io/build_resume.ts). */
  resume?: ResumableBuild;
  /**
   * Runs the calibration (data-parallel over slices of the calibration set)
   * and the middle blocks' scoring and compression as jobs of this queue, on
   * whichever `offtune worker`s serve it, instead of in this process; their
   * files go to `storage`, and are deleted once read unless `keepFiles`
   * (docs/DISTRIBUTED.md "Many machines", "Calibration slices"). The shards
   * are the same bytes either way. Not with `workers` > 1.
   */
  queue?: { submitter: JobSubmitter; storage: string; keepFiles?: boolean };
  /**
   * Threads the calibration passes, the KFAC sums, the scoring and the
   * compression run on (default 1: all in the calling thread, the default
   * of `build-emulator` too: docs/DISTRIBUTED.md "The default worker count"). With n > 1,
   * every chunk of the forward, the head and the backward, each linear's
   * KFAC sums and every middle block's scoring and compression go to a pool
   * of n slots: n - 1 worker threads and the calling thread; the chunking,
   * the loss and the KFAC sums keep one order, so the shards are the same
   * bytes for any count (docs/DISTRIBUTED.md "All cores of one machine").
   */
  workers?: number;
  /**
   * The pool's worker threads, started ahead (`CalibrationThreads`, for
   * `workers` slots) so they load while the model opens; else the build
   * starts them. The caller closes them.
   */
  threads?: CalibrationThreads;
}

/**
 * Middle blocks whose backward is still to come when a pool's worker thread
 * is sent the outer shard's write ({@link buildGradotEmulator}): 2-slot
 * OPT-125M builds, 14 interleaved runs each, 14.54 s mean with 0 (the write
 * after the last VJPs) and 14.33 s with 2 (docs/DISTRIBUTED.md "Where 2 slots
 * wait"); 1 measured as 0, and 3 as 2.
 */
const OUTER_LEAD_BLOCKS = 2;

/** The stages a block's progress marks name, in order. */
export type GradotStage = "forward" | "backward" | "score" | "compress";

/** The progress marks a GradOT build of `layers` blocks emits (one per block and {@link GradotStage}). */
export function gradotProgressSteps(layers: number): number {
  return 4 * layers;
}

/** The GradOT knobs {@link checkGradotVariant} checks (the ablations of docs/METHOD.md §2). */
export type GradotVariant = Pick<GradotOptions, "lambda" | "lambdaAttn" | "lambdaMlp" | "selection" | "only" | "attnShare">;

/**
 * Checks the ablation knobs of docs/METHOD.md §2 "Ablations" before any
 * work: `--lambda` alone or `--lambda-attn`/`--lambda-mlp`, a known
 * `--selection` and `--only`, and `--only` without `--attn-share`.
 *
 * @throws Error naming the flags and what is wrong
 */
export function checkGradotVariant(o: GradotVariant): void {
  if (o.lambda !== undefined && (o.lambdaAttn !== undefined || o.lambdaMlp !== undefined)) {
    throw new Error("--lambda sets both λ_attn and λ_mlp: it cannot be combined with --lambda-attn or --lambda-mlp");
  }
  if (o.selection !== undefined && !(SELECTIONS as readonly string[]).includes(o.selection)) {
    throw new Error(`--selection expects ${SELECTIONS.join(" or ")}, got "${o.selection}"`);
  }
  if (o.only !== undefined && !(COMPRESSED_PARTS as readonly string[]).includes(o.only)) {
    throw new Error(`--only expects ${COMPRESSED_PARTS.join(" or ")}, got "${o.only}"`);
  }
  if (o.only !== undefined && o.attnShare !== undefined) {
    throw new Error(`--only ${o.only} takes every removed parameter from one part: it cannot be combined with --attn-share`);
  }
}

/**
 * The settings recorded in the manifest and every shard: the budget, both
 * λ (and the unified `lambda` when it set them), the selection and the part
 * compressed (`only`, when one is).
 *
 * @throws Error for a bad combination of knobs ({@link checkGradotVariant})
 */
export function gradotSettings(o: GradotOptions): Record<string, unknown> {
  checkGradotVariant(o);
  return {
    ratio: o.ratio ?? GRADOT_DEFAULTS.ratio,
    ...(o.attnShare !== undefined ? { attnShare: o.attnShare } : {}),
    ...(o.lambda !== undefined ? { lambda: o.lambda } : {}),
    lambdaAttn: o.lambda ?? o.lambdaAttn ?? GRADOT_DEFAULTS.lambdaAttn,
    lambdaMlp: o.lambda ?? o.lambdaMlp ?? GRADOT_DEFAULTS.lambdaMlp,
    keepTopFraction: o.keepTopFraction ?? GRADOT_DEFAULTS.keepTopFraction,
    selection: o.selection ?? "gcs",
    ...(o.only !== undefined ? { only: o.only } : {}),
    calibration: { sequences: o.calibration.sequences, length: o.calibration.length },
  };
}

/**
 * Builds a GradOT emulator package of `model` in `options.out`. Each
 * subscription is one build, with its own progress count.
 */
export function buildGradotEmulator(model: ModelHandle, options: GradotOptions): Observable<ShardRecord> {
  const settings = gradotSettings(options);
  const blockSettings: BlockSettings = {
    ratio: settings.ratio as number,
    ...(options.attnShare !== undefined ? { attnShare: options.attnShare } : {}),
    lambdaAttn: settings.lambdaAttn as number,
    lambdaMlp: settings.lambdaMlp as number,
    keepTopFraction: settings.keepTopFraction as number,
    selection: settings.selection as SelectionKind,
    ...(options.only !== undefined ? { only: options.only } : {}),
  };
  const { events, calibration, signal, resume, queue } = options;
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be a positive integer, got ${workers}`);
  if (queue && workers > 1) {
    throw new Error(`workers ${workers} and a queue exclude each other: with a queue the calibration runs in the workers' slice jobs (docs/DISTRIBUTED.md "Calibration slices")`);
  }
  return defer(() => {
    middleBudget(model, blockSettings); // an unreachable ratio fails now, not after the calibration passes
    const total = gradotProgressSteps(model.cfg.layers);
    let done = 0;
    // On a pool, the outer shard is written on a worker thread once the backward has
    // passed all but the lowest OUTER_LEAD_BLOCKS middle blocks (or ends before: a resumed
    // build), beside their chunks and compressions; on this thread after the last block,
    // and then on a worker thread after the last VJPs, it ended the build with the other
    // slot idle (docs/DISTRIBUTED.md "Where 2 slots wait").
    let sendOuter = () => {};
    const outerCue = new Promise<void>((resolve) => (sendOuter = resolve));
    const mark = (name: GradotStage, block: number) => {
      if (name === "backward" && block <= model.split.bottom + OUTER_LEAD_BLOCKS) sendOuter();
      const tokens = name === "forward" || name === "backward" ? calibration.sequences * calibration.length : undefined;
      events?.next({ stage: name, block, done: ++done, total, unit: "steps", seconds: 0, ...(tokens ? { tokens } : {}) });
    };
    const stage = <R extends { index: number }>(name: GradotStage) => tap<R>((r) => mark(name, r.index));
    const build = (pool?: StartingPool): Observable<ShardRecord> => {
      const pace = pool ? new BlockPace() : undefined;
      const calibrated = queue
        ? queuedCalibration(model, {
          ...queue,
          out: options.out,
          calibration,
          chunk: options.chunk,
          events,
          signal,
          resume,
          onForward: () => model.blockIndices.forEach((i) => mark("forward", i)),
        })
        : readCheckpoint(model, events, signal, pace?.next).pipe(
          calibrateForward({ calibration, chunk: options.chunk, events, resume, pool, pace, linearOutputs: true }),
          stage("forward"),
          calibrateBackward({ chunk: options.chunk, events, signal, resume, pool }),
          pool ? poolKfac({ pool, tokens: calibration.sequences * (calibration.length - 1) }) : accumulateKfac({ events }),
        );
      const stats = calibrated.pipe(stage("backward"), finalize(() => sendOuter()));
      const local = gradotCompression(blockSettings, events);
      const compressed = queue
        ? pipe(queuedCompression({ ...queue, model, settings: blockSettings, local }), stage("score"))
        : pool
        ? pipe(poolCompression({ pool, model, settings: blockSettings, local }), stage("score"))
        : gradotCompression(blockSettings, events, stage("score"));
      return stats.pipe(
        compressed,
        stage("compress"),
        writeShards(options.out, {
          method: "gradot",
          settings,
          dtype: options.dtype,
          tokenizer: options.tokenizer,
          events,
          resume,
          ...(pool
            ? {
              outerElsewhere: { model, write: (path, meta, dtype) => outerCue.then(() => pool.started).then((p) => p.writeOuter(path, meta, dtype)) },
              blocksElsewhere: (path, meta, tensors, dtype) => pool.started.then((p) => p.writeBlock(path, meta, tensors, dtype)),
            }
            : {}),
        }),
      );
    };
    if (workers === 1) return build();
    // The first blocks' forward runs here while the workers start.
    const pool = new StartingPool(model, workers, options.threads);
    return build(pool).pipe(finalize(() => void pool.close()));
  });
}
