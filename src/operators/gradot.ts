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
import { type Observable, tap } from "rxjs";
import type { BudgetOptions } from "../compress/budget.ts";
import type { ShardDtype } from "../io/shard_schema.ts";
import type { CalibrationSet, ModelHandle, ShardRecord } from "../records/records.ts";
import { accumulateKfac } from "./accumulate_kfac.ts";
import { calibrateBackward } from "./calibrate_backward.ts";
import { calibrateForward } from "./calibrate_forward.ts";
import { compressDrd } from "./compress_drd.ts";
import { compressScp } from "./compress_scp.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import type { ResumableBuild } from "./build_resume.ts";
import { type GcsOptions, scoreGcs } from "./score_gcs.ts";
import type { StageClock } from "./stage_clock.ts";
import { writeShards } from "./write_shards.ts";

/** GradOT's defaults: λ by `offtune sweep-gradot` on fixtures/small (docs/GRADOT.md, "The λ sweep"); ratio 0.5 (`src/compress/budget.ts`). */
export const GRADOT_DEFAULTS = { ratio: 0.5, lambdaAttn: 1000, lambdaMlp: 10000, keepTopFraction: 0.05 } as const;

/** Everything {@link buildGradotEmulator} needs besides the model. */
export interface GradotOptions extends BudgetOptions, Partial<GcsOptions> {
  /** Calibration token ids (`calibrationFromTokens`). */
  calibration: CalibrationSet;
  /** Package directory to write. */
  out: string;
  /** Fraction of components DRD always keeps by singular value (default 0.05). */
  keepTopFraction?: number;
  /** Sequences per calibration chunk. */
  chunk?: number;
  /** Stored element type of the shards (default float32). */
  dtype?: ShardDtype;
  /** The tokenizer.json the package carries (default: the model directory's own; `writeShards`). */
  tokenizer?: string;
  /** Progress/stage events, e.g. for a TTY progress line or a benchmark. */
  onStage?: (stage: GradotStage, block: number) => void;
  /** Called with the calibration LM loss once the backward has computed it. */
  onLoss?: (loss: number) => void;
  /** Charges each stage's seconds (for `offtune bench gradot`). */
  clock?: StageClock;
  /** Stops the build at the next block boundary once aborted (src/cli/interrupt.ts). */
  signal?: AbortSignal;
  /** Keeps the build's progress on disk, continuing an earlier run's (src/operators/build_resume.ts). */
  resume?: ResumableBuild;
}

/** The stages a block goes through, in order. */
export type GradotStage = "forward" | "backward" | "score" | "compress" | "write";

/** The settings recorded in the manifest and every shard. */
export function gradotSettings(o: GradotOptions): Record<string, unknown> {
  return {
    ratio: o.ratio ?? GRADOT_DEFAULTS.ratio,
    ...(o.attnShare !== undefined ? { attnShare: o.attnShare } : {}),
    lambdaAttn: o.lambdaAttn ?? GRADOT_DEFAULTS.lambdaAttn,
    lambdaMlp: o.lambdaMlp ?? GRADOT_DEFAULTS.lambdaMlp,
    keepTopFraction: o.keepTopFraction ?? GRADOT_DEFAULTS.keepTopFraction,
    calibration: { sequences: o.calibration.sequences, length: o.calibration.length },
  };
}

/** Builds a GradOT emulator package of `model` in `options.out`. */
export function buildGradotEmulator(model: ModelHandle, options: GradotOptions): Observable<ShardRecord> {
  const settings = gradotSettings(options);
  const budget = { ratio: settings.ratio as number, attnShare: options.attnShare };
  const stage = <R extends { index: number }>(name: GradotStage) =>
    tap<R>((r) => options.onStage?.(name, r.index));
  const { clock, signal, resume } = options;
  const stats = readCheckpoint(model, clock, signal).pipe(
    calibrateForward({ calibration: options.calibration, chunk: options.chunk, clock, resume }),
    stage("forward"),
    calibrateBackward({ chunk: options.chunk, onLoss: options.onLoss, clock, signal, resume }),
    accumulateKfac(clock),
    stage("backward"),
  );
  return stats.pipe(
    scoreGcs({ lambdaAttn: settings.lambdaAttn as number, lambdaMlp: settings.lambdaMlp as number, clock }),
    stage("score"),
    compressDrd({ ...budget, keepTopFraction: settings.keepTopFraction as number, clock }),
    compressScp({ ...budget, clock }),
    stage("compress"),
    writeShards(options.out, { method: "gradot", settings, dtype: options.dtype, tokenizer: options.tokenizer, clock, resume }),
  );
}
