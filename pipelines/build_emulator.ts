/**
 * `offtune build-emulator`: the model owner's step (docs/METHOD.md §1-3). Streams
 * a checkpoint block by block through the GradOT pipeline (calibration
 * forward/backward, KFAC, GCS, DRD + SCP), or through the OT LayerDrop
 * baseline (keep every k-th middle block, no calibration), and writes the
 * emulator package (Arrow shards + manifest) atomically.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import process from "node:process";
import { lastValueFrom, type Observable, tap, toArray } from "rxjs";
import { listenForInterrupts, signalExitCode } from "../src/cli/interrupt.ts";
import { createProgress, type ProgressReporter } from "../src/cli/progress.ts";
import { calibrationFromTokens } from "../src/data/calibration.ts";
import { readTokensOfFile } from "../src/data/text_tokens.ts";
import type { ModelConfig } from "../src/model/types.ts";
import { removeStaleTemporaries } from "../src/io/stale_temps.ts";
import { ResumableBuild } from "../src/operators/build_resume.ts";
import { buildGradotEmulator, GRADOT_DEFAULTS, type GradotOptions, gradotSettings } from "../src/operators/gradot.ts";
import { buildLayerDropEmulator, layerDropBlocks } from "../src/operators/layer_drop.ts";
import { DEFAULT_SPLIT, openModel } from "../src/operators/model_handle.ts";
import type { AdapterSplit, CalibrationSet, ModelHandle, ShardRecord } from "../src/records/records.ts";
import { type StageClock, totalsClock } from "../src/operators/stage_clock.ts";
import { initBackend } from "../src/tensor/backend.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { checkOutputDir } from "../src/io/output_dir.ts";
import { fractionFlag, nonNegativeFlag, parseVerbFlags, positiveIntFlag } from "./flags.ts";
import { tokenizerFor } from "./tokenizer_for.ts";

/** Help text for the verb. */
export const help = `offtune build-emulator --model <checkpoint> --calibration <file> --out <dir> [flags]
offtune build-emulator --method layerdrop --model <checkpoint> --out <dir> [--ratio <x>]

Builds an emulator of the original model's middle blocks and writes one
Arrow shard per kept block, the outer weights and manifest.msgpack to --out
(atomically). The adapter blocks are copied unchanged. --out must not exist,
be empty, or hold an emulator package; anything else is refused unless
--force, which replaces it once the new package is complete. --out may never
be, hold or lie inside --model or --calibration. Ctrl-C or SIGTERM stops the
build at the next block and removes its temporary files (exit 130 or 143).
A GradOT build killed outright keeps its progress in <out>.partial-<key>:
the same command run again continues it, redoing at most the block in
flight (docs/GUARANTEES.md). Methods:

  gradot     (default, docs/METHOD.md §2) one calibration forward + backward over
             the original model, KFAC factors, GCS scores, DRD of the
             attention projections and SCP of the MLP channels of the
             middle blocks
  layerdrop  (the OT† baseline, docs/METHOD.md §3) keeps round(ratio x M) of the
             M middle blocks, spread uniformly, unchanged, and drops the
             rest; needs no calibration and ignores the calibration and
             GradOT flags

  --method <m>           gradot | layerdrop (default gradot)
  --model <dir>          Hugging Face checkpoint (config.json + safetensors)
  --calibration <file>   calibration text: plain text, or .jsonl of {"text": ...}
                         documents, tokenized with the model's tokenizer; or
                         a Uint16 token stream (.bin); required for gradot
  --out <dir>            emulator package directory
  --force                replace whatever --out holds (atomically)
  --ratio <x>            emulator params / original middle params, in (0, 1]
                         (default ${GRADOT_DEFAULTS.ratio}); layerdrop: fraction of middle blocks kept
  --split <b,t>          adapter blocks at bottom,top (default ${DEFAULT_SPLIT.bottom},${DEFAULT_SPLIT.top})
  --tokenizer <file>     tokenizer.json for the calibration text, carried in the
                         package (default: the model's own, else the fixture one)
  --fp16                 store shards as float16
  --timings <file>       write seconds per stage and peak RSS as JSON
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress

GradOT only:
  --sequences <n>        calibration sequences N (default 64)
  --length <n>           tokens per sequence T (default min(128, max positions))
  --attn-share <x>       fraction in [0, 1] of removed params taken from attention
  --lambda-attn <x>      GCS λ ≥ 0 for attention (default ${GRADOT_DEFAULTS.lambdaAttn})
  --lambda-mlp <x>       GCS λ ≥ 0 for the MLP (default ${GRADOT_DEFAULTS.lambdaMlp})
  --keep-top <x>         fraction in [0, 1] of DRD components always kept by
                         singular value (default ${GRADOT_DEFAULTS.keepTopFraction})
  --chunk <n>            sequences per calibration chunk (default ~512 tokens)`;

const FLAGS = {
  method: { type: "string", default: "gradot" },
  model: { type: "string" },
  calibration: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean", default: false },
  sequences: { type: "string", default: "64" },
  length: { type: "string" },
  ratio: { type: "string" },
  "attn-share": { type: "string" },
  "lambda-attn": { type: "string" },
  "lambda-mlp": { type: "string" },
  "keep-top": { type: "string" },
  split: { type: "string" },
  chunk: { type: "string" },
  tokenizer: { type: "string" },
  fp16: { type: "boolean", default: false },
  backend: { type: "string" },
  timings: { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

/** `--split b,t` as an {@link AdapterSplit}. */
export function splitFlag(value: string | undefined): AdapterSplit | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+),(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`--split expects "bottom,top" block counts, e.g. 2,2; got "${value}"`);
  return { bottom: Number(m[1]), top: Number(m[2]) };
}

/**
 * Token ids of a calibration file (src/data/text_tokens.ts): a `.bin` Uint16
 * stream as written by `build_fixtures`, a `.jsonl` of `{"text"}` documents,
 * or text, tokenized with the model's tokenizer (found by
 * pipelines/tokenizer_for.ts: `explicit`, else the model directory's
 * tokenizer.json, else the fixture one, with a notice unless `quiet`).
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

/** The process's peak resident set size so far, in bytes. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

type Flags = ReturnType<typeof parseFlags>;

/**
 * The verb's flags, with --method checked, --calibration required for gradot
 * only, and the numbers range-checked (before any work) into `numbers`.
 */
function parseFlags(argv: string[]) {
  const flags = parseVerbFlags(argv, FLAGS, "build-emulator", ["model", "out"]);
  if (flags.method !== "gradot" && flags.method !== "layerdrop") {
    throw new Error(`--method expects gradot or layerdrop, got "${flags.method}"`);
  }
  if (flags.method === "gradot" && !flags.calibration) {
    throw new Error("--calibration is required for --method gradot (see offtune build-emulator --help)");
  }
  const numbers = {
    ratio: fractionFlag(flags.ratio, "ratio"),
    attnShare: fractionFlag(flags["attn-share"], "attn-share", true),
    lambdaAttn: nonNegativeFlag(flags["lambda-attn"], "lambda-attn"),
    lambdaMlp: nonNegativeFlag(flags["lambda-mlp"], "lambda-mlp"),
    keepTopFraction: fractionFlag(flags["keep-top"], "keep-top", true),
    sequences: positiveIntFlag(flags.sequences, "sequences")!,
    length: positiveIntFlag(flags.length, "length"),
    chunk: positiveIntFlag(flags.chunk, "chunk"),
  };
  return { ...flags, numbers };
}

/** A method's build: the shard stream, the calibration tokens it reads and, for GradOT, its resumable directory. */
interface Build {
  shards: Observable<ShardRecord>;
  tokens: number;
  resume?: ResumableBuild;
}

/**
 * The resumable directory of a GradOT build: keyed by everything its bytes
 * depend on besides the model (settings, dtype, split, chunking and the
 * calibration tokens themselves).
 */
function openResumable(model: ModelHandle, options: GradotOptions, quiet: boolean): ResumableBuild {
  const ids = options.calibration.ids;
  const tokens = createHash("sha256").update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest("hex");
  const inputs = {
    method: "gradot",
    settings: gradotSettings(options),
    dtype: options.dtype,
    split: model.split,
    chunk: options.chunk ?? null,
    tokens,
  };
  return ResumableBuild.open(options.out, model, inputs, (message) => {
    if (!quiet) console.error(`build-emulator: ${message}`);
  });
}

/** The GradOT build the flags ask for, with per-stage progress and the calibration loss (unless quiet). */
async function gradotBuild(
  model: ModelHandle,
  flags: Flags,
  clock: StageClock,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<Build> {
  const { sequences, ...numbers } = flags.numbers;
  const length = numbers.length ?? Math.min(128, model.cfg.maxPositions);
  const calibration: CalibrationSet = calibrationFromTokens(
    await readCalibrationTokens(flags.calibration!, flags.model, model.cfg, flags.quiet, flags.tokenizer),
    sequences,
    length,
    `Calibration file "${flags.calibration}"`,
  );
  const layers = model.cfg.layers;
  let events = 0;
  let tokens = 0;
  const options: GradotOptions = {
    calibration,
    out: flags.out,
    ratio: numbers.ratio,
    attnShare: numbers.attnShare,
    lambdaAttn: numbers.lambdaAttn,
    lambdaMlp: numbers.lambdaMlp,
    keepTopFraction: numbers.keepTopFraction,
    chunk: numbers.chunk,
    dtype: flags.fp16 ? "float16" : "float32",
    tokenizer: flags.tokenizer,
    clock,
    onStage: (stage, block) => {
      events++;
      if (stage === "forward" || stage === "backward") tokens += sequences * length;
      progress.update({ done: events, total: 4 * layers, unit: "steps", detail: `block ${block + 1}/${layers} ${stage}`, tokens });
    },
    onLoss: (loss) => {
      if (!flags.quiet) console.error(`calibration loss ${loss.toFixed(4)} (perplexity ${Math.exp(loss).toFixed(2)})`);
    },
    signal,
  };
  const resume = openResumable(model, options, flags.quiet);
  return { shards: buildGradotEmulator(model, { ...options, resume }), tokens: sequences * length, resume };
}

/** The LayerDrop build the flags ask for (the calibration and GradOT flags are ignored), with per-shard progress. */
function layerDropBuild(model: ModelHandle, flags: Flags, clock: StageClock, progress: ProgressReporter, signal: AbortSignal): Build {
  const ratio = flags.numbers.ratio ?? GRADOT_DEFAULTS.ratio; // matched emulator size (docs/METHOD.md §5)
  const total = layerDropBlocks(model.cfg.layers, model.split, ratio).length + 1; // + the outer weights
  let written = 0;
  const shards = buildLayerDropEmulator(model, { ratio, out: flags.out, dtype: flags.fp16 ? "float16" : "float32", tokenizer: flags.tokenizer, clock, signal })
    .pipe(tap((shard) => progress.update({ done: ++written, total, unit: "shards", detail: `wrote ${shard.file}` })));
  return { shards, tokens: 0 };
}

/**
 * CLI entry: 0 when the package is written; 130 or 143 when SIGINT or
 * SIGTERM stopped the build (its temporary files removed, `--out` untouched).
 */
export async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  await checkOutputDir({
    verb: "build-emulator",
    flag: "out",
    path: flags.out,
    kind: { package: "emulator" },
    inputs: { model: flags.model, calibration: flags.method === "gradot" ? flags.calibration : undefined },
    force: flags.force,
  });
  removeStaleTemporaries([flags.out]);
  await initBackend(flags.backend, flags.quiet);
  const model = await openModel(flags.model, { split: splitFlag(flags.split), streamVocabulary: true });
  const interrupts = listenForInterrupts();
  let build: Build | undefined;
  try {
    const progress = createProgress("build-emulator", flags.quiet);
    const started = performance.now();
    const clock = totalsClock();
    build = flags.method === "gradot"
      ? await gradotBuild(model, flags, clock, progress, interrupts.signal)
      : layerDropBuild(model, flags, clock, progress, interrupts.signal);
    const shards = await lastValueFrom(build.shards.pipe(toArray())).catch((e) => {
      progress.finish();
      throw e;
    });
    progress.finish(`${shards.length} shards`);
    const bytes = shards.reduce((n, s) => n + s.bytes, 0);
    const seconds = (performance.now() - started) / 1000;
    console.log(`wrote ${flags.out} (${shards.length} shards, ${(bytes / 1e6).toFixed(2)} MB) in ${seconds.toFixed(1)} s`);
    if (flags.timings) {
      await writeFileAtomic(flags.timings, new TextEncoder().encode(JSON.stringify({
        seconds,
        stages: Object.fromEntries(clock.totals),
        peakRssBytes: peakRssBytes(),
        layers: model.cfg.layers,
        tokens: build.tokens,
      }, null, 2) + "\n"));
    }
    return 0;
  } catch (e) {
    if (!interrupts.received) throw e;
    build?.resume?.discard();
    if (!flags.quiet) console.error(`build-emulator: stopped by ${interrupts.received}; temporary files removed, "${flags.out}" untouched`);
    return signalExitCode(interrupts.received);
  } finally {
    interrupts.close();
    await model.close();
  }
}
