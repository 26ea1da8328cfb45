/**
 * The model owner's first step (docs/METHOD.md §1-3) as library calls
 * (`offtune build-emulator`): calibration loading — a token stream or text
 * tokenized with the model's tokenizer — and the emulator build of each
 * method, GradOT ({@link buildGradotEmulator}: calibration forward/backward,
 * KFAC, GCS, DRD + SCP), the OT LayerDrop baseline
 * ({@link buildLayerDropEmulator}: keep every k-th middle block, no
 * calibration), the CRaSh baseline ({@link buildCrashEmulator}: cluster
 * the middle by CKA on calibration text, keep and share one block per
 * group), the OT distilled baseline ({@link buildOtDistillEmulator}:
 * LayerDrop's blocks, the kept middle distilled on calibration text) or
 * ScaleOT ({@link buildScaleotEmulator}: replace the least important middle
 * blocks by trained harmonizers, cut the kept blocks' attention rank), as
 * one stream of shard records.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Observable } from "rxjs";
import { calibrationFromTokens } from "../data/calibration.ts";
import { readTokensOfFile } from "../data/text_tokens.ts";
import type { StageEvents } from "../events/stage_events.ts";
import { ResumableBuild } from "../io/build_resume.ts";
import type { ShardDtype } from "../io/shard_schema.ts";
import { tokenizerFor } from "../io/tokenizer_for.ts";
import type { ModelConfig } from "../model/types.ts";
import { buildCrashEmulator } from "../operators/crash.ts";
import { buildGradotEmulator, GRADOT_DEFAULTS, type GradotOptions, gradotSettings } from "../operators/gradot.ts";
import { buildLayerDropEmulator } from "../operators/layer_drop.ts";
import { buildOtDistillEmulator, type OtDistillSettings } from "../operators/ot_distill.ts";
import { buildScaleotEmulator, type ScaleotOptions } from "../operators/scaleot.ts";
import type { CalibrationSet, ModelHandle, ShardRecord } from "../records/records.ts";

/**
 * Token ids of a calibration file (src/data/text_tokens.ts): a `.bin` Uint16
 * stream as written by `offtune build-fixtures`, a `.jsonl` of `{"text"}`
 * documents, or text, tokenized with the model's tokenizer (`tokenizerFor`:
 * `explicit`, else the model directory's tokenizer.json, else the fixture
 * one, with a notice unless `quiet`).
 *
 * @throws Error naming the file when it cannot be read or holds ids beyond
 *   the model's vocabulary
 */
export async function readCalibrationTokens(
  file: string,
  modelDir: string,
  cfg: ModelConfig,
  quiet: boolean,
  explicit?: string,
): Promise<ArrayLike<number>> {
  return await readTokensOfFile(file, "calibration file", cfg.vocabSize, async () => (await tokenizerFor(modelDir, cfg, explicit, quiet)).tokenizer);
}

/** How {@link loadCalibration} cuts the calibration set. */
export interface LoadCalibrationOptions {
  /** Calibration sequences N (default 64, the CLI's). */
  sequences?: number;
  /** Tokens per sequence T (default min(128, the model's positions)). */
  length?: number;
  /** The tokenizer.json to encode text with (default: the model directory's own, else the fixture one). */
  tokenizer?: string;
  /** No notice when the fixture tokenizer is used. */
  quiet?: boolean;
}

/**
 * The calibration set GradOT reads, from a calibration file
 * ({@link readCalibrationTokens}) of the model read from `model.source`: N sequences of
 * T tokens spread evenly over the file (`calibrationFromTokens`).
 */
export async function loadCalibration(
  file: string,
  model: Pick<ModelHandle, "cfg" | "source">,
  options: LoadCalibrationOptions = {},
): Promise<CalibrationSet> {
  const length = options.length ?? Math.min(128, model.cfg.maxPositions);
  const tokens = await readCalibrationTokens(file, model.source, model.cfg, options.quiet ?? false, options.tokenizer);
  return calibrationFromTokens(tokens, options.sequences ?? 64, length, `Calibration file "${file}"`);
}

/**
 * The emulator methods {@link buildEmulator} knows (`--method` of
 * build-emulator and experiment): GradOT (docs/METHOD.md §2) and the
 * baselines of docs/METHOD.md §3.
 */
export const EMULATOR_METHODS = ["gradot", "layerdrop", "crash", "ot-distill", "scaleot"] as const;

/** One of {@link EMULATOR_METHODS}. */
export type EmulatorMethod = typeof EMULATOR_METHODS[number];

/** The methods that read a calibration set (`--calibration`, `--sequences`): all but LayerDrop. */
export function needsCalibration(method: EmulatorMethod): boolean {
  return method !== "layerdrop";
}

/**
 * `method` as an {@link EmulatorMethod}.
 *
 * @throws Error naming `--method` and the methods known, for anything else
 */
export function emulatorMethod(method: string): EmulatorMethod {
  if ((EMULATOR_METHODS as readonly string[]).includes(method)) return method as EmulatorMethod;
  const known = `${EMULATOR_METHODS.slice(0, -1).join(", ")} or ${EMULATOR_METHODS.at(-1)}`;
  throw new Error(`--method expects ${known}, got "${method}"`);
}

/** Everything {@link buildEmulator} needs besides the model. */
export interface BuildEmulatorOptions
  extends
    Partial<Omit<GradotOptions, "out" | "dtype" | "events">>,
    Pick<ScaleotOptions, "replaceFraction" | "rankReduction" | "importance" | "episodes" | "harmonizerRank" | "harmonizerSteps" | "seed"> {
  /** GradOT (the default), or the OT LayerDrop, CRaSh, OT distilled or ScaleOT baseline. */
  method?: EmulatorMethod;
  /** Package directory to write (atomically). */
  out: string;
  /**
   * Emulator params / original middle params in (0, 1] for GradOT and
   * ScaleOT, the fraction of middle blocks kept for LayerDrop and CRaSh (default
   * {@link GRADOT_DEFAULTS}.ratio for all, so the emulators match in size).
   */
  ratio?: number;
  /** Stored element type (default float32). */
  dtype?: ShardDtype;
  /** The build's stage events (timings and progress marks of either method). */
  events?: StageEvents;
  /** The OT distillation's settings (`ot-distill` only; defaults `OT_DISTILL_DEFAULTS`, docs/METHOD.md §3). */
  distill?: Partial<OtDistillSettings>;
}

/**
 * The shard stream of an emulator build of `model`: GradOT, CRaSh or
 * ScaleOT with `options.calibration` (required), or LayerDrop (calibration
 * and GradOT settings ignored; CRaSh and ScaleOT ignore the GradOT
 * settings too, and only ScaleOT reads its own), or the OT distilled
 * emulator with `options.calibration` and `options.distill`. Nothing runs
 * until it is subscribed.
 *
 * @throws Error for an unknown method, or a method of {@link needsCalibration} without a calibration set
 */
export function buildEmulator(model: ModelHandle, options: BuildEmulatorOptions): Observable<ShardRecord> {
  const method = emulatorMethod(options.method ?? "gradot");
  const { out, dtype, tokenizer, events, signal } = options;
  const ratio = options.ratio ?? GRADOT_DEFAULTS.ratio; // matched emulator size (docs/METHOD.md §5)
  if (method === "layerdrop") return buildLayerDropEmulator(model, { ratio, out, dtype, tokenizer, events, signal });
  const { calibration } = options;
  if (!calibration) {
    const name = { gradot: "GradOT", crash: "CRaSh", "ot-distill": "OT distillation", scaleot: "ScaleOT" }[method];
    throw new Error(`A ${name} build needs a calibration set (loadCalibration)`);
  }
  if (method === "ot-distill") {
    return buildOtDistillEmulator(model, { ...options.distill, ratio, calibration, out, dtype, tokenizer, events, signal });
  }
  if (method === "scaleot") return buildScaleotEmulator(model, { ...options, ratio, calibration });
  if (method === "crash") return buildCrashEmulator(model, { ratio, calibration, chunk: options.chunk, out, dtype, tokenizer, events, signal });
  return buildGradotEmulator(model, { ...options, calibration });
}

/**
 * The resumable directory of a GradOT build of `model` into `options.out`
 * (`<out>.partial-<key>`, src/io/build_resume.ts), keyed by everything its
 * bytes depend on besides the model: settings, dtype, split, chunking and
 * the calibration tokens themselves. Pass it to {@link buildEmulator} as
 * `resume`, so a build killed outright continues where it stopped; call its
 * `discard()` when the build is abandoned (e.g. interrupted).
 *
 * @param onNotice told what was resumed or discarded (for the CLI's stderr)
 * @throws Error when a live process owns the directory
 */
export function openResumableBuild(
  model: ModelHandle,
  options: BuildEmulatorOptions & { calibration: CalibrationSet },
  onNotice?: (message: string) => void,
): ResumableBuild {
  const ids = options.calibration.ids;
  const tokens = createHash("sha256").update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest("hex");
  const inputs = {
    method: "gradot",
    settings: gradotSettings({ ...options, calibration: options.calibration }),
    dtype: options.dtype,
    split: model.split,
    chunk: options.chunk ?? null,
    tokens,
  };
  return ResumableBuild.open(options.out, model, inputs, onNotice);
}
