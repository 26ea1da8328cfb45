/**
 * `offtune build-emulator`: the model owner's step (docs/METHOD.md §1-3). Streams
 * a checkpoint block by block through the GradOT pipeline (calibration
 * forward/backward, KFAC, GCS, DRD + SCP), through the OT LayerDrop
 * baseline (keep every k-th middle block, no calibration), the CRaSh
 * baseline (cluster the middle by CKA, share one block per group), the
 * OT distilled baseline (LayerDrop's blocks, the kept middle distilled) or
 * ScaleOT (harmonizers for the least important blocks, rank-reduced
 * attention in the others), and
 * writes the emulator package (Arrow shards + manifest) atomically
 * (`loadCalibration` and `buildEmulator` of mod.ts).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import {
  blockTimings,
  buildEmulator,
  type CalibrationSet,
  CalibrationThreads,
  checkGradotVariant,
  checkOutputDir,
  DEFAULT_SPLIT,
  EMULATOR_METHODS,
  formatBlockTiming,
  emulatorMethod,
  GRADOT_DEFAULTS,
  type GradotOptions,
  initBackend,
  JobSubmitter,
  loadCalibration,
  middleBudget,
  needsCalibration,
  openModel,
  openResumableBuild,
  otDistillSettings,
  otDistillStatePath,
  peakRssBytes,
  readManifest,
  removeStaleTemporaries,
  type ResumableBuild,
  SCALEOT_DEFAULTS,
  scaleotSummary,
  stageTotals,
  tieSummary,
  writeFileAtomic,
} from "../mod.ts";
import { listenForInterrupts, signalExitCode } from "../src/cli/interrupt.ts";
import { createProgress, progressEvents } from "../src/cli/progress.ts";
import {
  DISTILL_FLAGS,
  DISTILL_HELP,
  distillFromFlags,
  fractionFlag,
  nonNegativeFlag,
  parseVerbFlags,
  positiveIntFlag,
  SCALEOT_FLAGS,
  scaleotFromFlags,
  splitFlag,
} from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune build-emulator --model <checkpoint> --calibration <file> --out <dir> [flags]
offtune build-emulator --method layerdrop --model <checkpoint> --out <dir> [--ratio <x>]
offtune build-emulator --method crash --model <checkpoint> --calibration <file> --out <dir> [--ratio <x>]
offtune build-emulator --method ot-distill --model <checkpoint> --calibration <file> --out <dir> [--ratio <x>] [--distill-* ...]
offtune build-emulator --method scaleot --model <checkpoint> --calibration <file> --out <dir> [--ratio <x>] [--importance rl]

Builds an emulator of the original model's middle blocks and writes one
Arrow shard per kept block, the outer weights and manifest.msgpack to --out
(atomically). The adapter blocks are copied unchanged. --out must not exist,
be empty, or hold an emulator package; anything else is refused unless
--force, which replaces it once the new package is complete. --out may never
be, hold or lie inside --model or --calibration. Ctrl-C or SIGTERM stops the
build at the next block and removes its temporary files (exit 130 or 143).
A GradOT build killed outright keeps its progress in <out>.partial-<key>:
the same command run again continues it, redoing at most the block in
flight (and, with --workers n, the blocks still being compressed;
docs/GUARANTEES.md). An ot-distill build saves its training state in
<out>.ot-distill-state.safetensors every 10 steps and when stopped; the
same command run again continues from it. Methods:

  gradot     (default, docs/METHOD.md §2) one calibration forward + backward over
             the original model, KFAC factors, GCS scores, DRD of the
             attention projections and SCP of the MLP channels of the
             middle blocks
  layerdrop  (the OT† baseline, docs/METHOD.md §3) keeps round(ratio x M) of the
             M middle blocks, spread uniformly, unchanged, and drops the
             rest; needs no calibration and ignores the calibration and
             GradOT flags
  crash      (the CRaSh baseline, docs/METHOD.md §3) clusters the M middle
             blocks into round(ratio x M) groups of consecutive blocks by
             the CKA of their outputs on the calibration text, keeps the
             first block of each group and runs it at every position of
             the group (stored once; the emulator keeps the original
             depth); takes --calibration, --sequences and --length
  ot-distill (the OT baseline with distillation, docs/METHOD.md §3) keeps
             LayerDrop's blocks and trains the kept middle blocks on the
             calibration text so that the emulator's middle reproduces the
             original middle's output (normalised hidden-state MSE + the
             emulator's LM loss; adapter blocks, embeddings and head
             frozen); takes --calibration, --sequences, --length and the
             --distill-* flags
  scaleot    (ScaleOT, docs/METHOD.md §3) scores each middle block's
             importance on the calibration text, replaces the least
             important by small harmonizers trained to reproduce them, and
             cuts the rank of the other middle blocks' attention projections
             by SVD; --ratio sets how many are replaced (the middle's params
             nearest ratio x the original's) unless --replace-fraction does;
             prints the blocks replaced and the middle's parameter count

  --method <m>           ${EMULATOR_METHODS.join(" | ")} (default gradot)
  --model <dir>          Hugging Face checkpoint (config.json + safetensors)
  --calibration <file>   calibration text: plain text, or .jsonl of {"text": ...}
                         documents, tokenized with the model's tokenizer; or
                         a Uint16 token stream (.bin); required for gradot,
                         crash, ot-distill and scaleot
  --out <dir>            emulator package directory
  --force                replace whatever --out holds (atomically)
  --ratio <x>            emulator params / original middle params, in (0, 1]
                         (default ${GRADOT_DEFAULTS.ratio}); layerdrop, crash, ot-distill:
                         fraction of middle blocks kept; scaleot: ignored
                         with --replace-fraction
  --split <b,t>          adapter blocks at bottom,top (default ${DEFAULT_SPLIT.bottom},${DEFAULT_SPLIT.top})
  --tokenizer <file>     tokenizer.json for the calibration text, carried in the
                         package (default: the model's own, else the fixture one)
  --fp16                 store shards as float16
  --timings <file>       write seconds per stage and peak RSS as JSON, and per
                         block: seconds per stage, RSS after its shard
  --block-lines          print that line per block as it finishes (stdout)
  --backend <name>       auto | tensorflow | wasm | cpu
  --quiet                no progress
  --workers <n>          GradOT only: threads for the calibration passes
                         (every chunk of the forward, the loss and the
                         backward), the KFAC sums and the middle blocks'
                         scoring and compression: n - 1 worker threads and
                         this one. Default 1: everything in this thread (on
                         2 cores, the OPT-125M shape with 2048 tokens built
                         only about 1.1x as fast with 2, at 2.5x the peak
                         RSS; fixtures/small slower). At most one per
                         calibration chunk is useful. Each worker holds a
                         block and its own heap: memory grows with n. The
                         shards are the same bytes for any n
                         (docs/DISTRIBUTED.md "How a GradOT build uses the
                         cores")
  --queue <url>          GradOT only: run the calibration and the middle
                         blocks' scoring and compression as jobs of this
                         Redis queue (redis://host:port), run by offtune
                         worker on any machine: the calibration as one
                         gradot-slice job per slice of the calibration set
                         (forward, loss and backward over the whole model;
                         slices of whole chunks, at least 4,096 tokens and
                         whole loss chunks, so --sequences 16 --length 128
                         is one slice), each middle block as a gradot-block
                         job. This process only sums each block's KFAC
                         factors from the slices' files, in chunk order, and
                         writes the shards: the same bytes as one process,
                         for any number of workers (docs/DISTRIBUTED.md
                         "Calibration slices"). Not with --workers n > 1
  --storage <dir>        with --queue: the shared directory the slice and
                         block files go to (default: the directory of --out);
                         --model must be on shared storage too. The slice
                         files hold every middle block's linear inputs and
                         output gradients (on OPT-125M 48 KB per token and
                         middle block; at worst all blocks' at once); a
                         block's are deleted once its shard is written
  --keep-slice-files     with --queue: keep the slice files (in
                         <storage>/slices); the same build run again reuses
                         them instead of running the slice jobs again

GradOT, CRaSh, ot-distill and ScaleOT:
  --sequences <n>        calibration sequences N (default 64)
  --length <n>           tokens per sequence T (default min(128, max positions))
  --chunk <n>            sequences per calibration chunk (default ~512 tokens)

GradOT only:
  --attn-share <x>       fraction in [0, 1] of removed params taken from attention
  --lambda-attn <x>      GCS λ ≥ 0 for attention (default ${GRADOT_DEFAULTS.lambdaAttn})
  --lambda-mlp <x>       GCS λ ≥ 0 for the MLP (default ${GRADOT_DEFAULTS.lambdaMlp})
  --keep-top <x>         fraction in [0, 1] of DRD components always kept by
                         singular value (default ${GRADOT_DEFAULTS.keepTopFraction})

GradOT ablations (docs/METHOD.md §2 "Ablations"):
  --lambda <x>           one λ ≥ 0 for attention and MLP alike (not with
                         --lambda-attn or --lambda-mlp)
  --selection <s>        gcs (default) | magnitude: keep the top singular values
                         (plain truncated SVD) and the channels of largest
                         weight norm, at the ranks and widths GCS would get
  --only <part>          drd | scp: compress attention only (the MLP kept
                         whole) or the MLP only (attention kept whole), the
                         whole budget taken from that part; a --ratio the
                         part alone cannot reach is refused, naming the
                         smallest one (not with --attn-share)

At the end of a GradOT build one line says in how many blocks the SCP cut
(and in how many projections the DRD cut) fell among equal GCS, and how many
channels or components the tie-break (weight magnitude, then index) chose.

${DISTILL_HELP}

ScaleOT only:
  --replace-fraction <x> α in [0, 1): replace round(α x M) of the M middle blocks
                         by harmonizers (default: from --ratio)
  --rank-reduction <x>   β in [0, 1): fraction of each kept attention
                         projection's rank removed (default ${SCALEOT_DEFAULTS.rankReduction})
  --importance <e>       cheap (1 − cosine of each block's input and output) |
                         rl (REINFORCE policy rewarded by minus the loss on the
                         first ${SCALEOT_DEFAULTS.rewardSequences} calibration sequences with the chosen
                         blocks skipped) (default ${SCALEOT_DEFAULTS.importance})
  --episodes <n>         REINFORCE episodes of --importance rl (default ${SCALEOT_DEFAULTS.episodes})`;

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
  lambda: { type: "string" },
  selection: { type: "string" },
  only: { type: "string" },
  "keep-top": { type: "string" },
  ...SCALEOT_FLAGS,
  split: { type: "string" },
  chunk: { type: "string" },
  tokenizer: { type: "string" },
  fp16: { type: "boolean", default: false },
  backend: { type: "string" },
  timings: { type: "string" },
  "block-lines": { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  ...DISTILL_FLAGS,
  workers: { type: "string" },
  queue: { type: "string" },
  storage: { type: "string" },
  "keep-slice-files": { type: "boolean", default: false },
} as const;

/**
 * The verb's flags, with --method checked, --calibration required for the
 * methods that calibrate, and ScaleOT's flags refused for other methods.
 */
function parseFlags(argv: string[]) {
  const flags = parseVerbFlags(argv, FLAGS, "build-emulator", ["model", "out"]);
  const method = emulatorMethod(flags.method);
  if (needsCalibration(method) && !flags.calibration) {
    throw new Error(`--calibration is required for --method ${method} (see offtune build-emulator --help)`);
  }
  if (flags.queue !== undefined && method !== "gradot") throw new Error(`--queue works with --method gradot only, not ${method}`);
  if (flags.workers !== undefined && method !== "gradot") throw new Error(`--workers works with --method gradot only, not ${method}`);
  if (flags.storage !== undefined && flags.queue === undefined) throw new Error("--storage needs --queue (see offtune build-emulator --help)");
  if (flags["keep-slice-files"] && flags.queue === undefined) throw new Error("--keep-slice-files needs --queue (see offtune build-emulator --help)");
  if (flags.queue !== undefined && flags.workers !== undefined && flags.workers !== "1") {
    throw new Error("--queue runs the calibration on the queue's workers: it cannot be combined with --workers (run more offtune workers, or --concurrency, instead)");
  }
  return { ...flags, method, scaleot: scaleotFromFlags(flags, method) };
}

/**
 * CLI entry: 0 when the package is written; 130 or 143 when SIGINT or
 * SIGTERM stopped the build (its temporary files removed, `--out` untouched).
 * `early`: the pool's threads, when the dispatcher started them before
 * loading this module (src/cli/early_threads.ts); used if `--workers` asks
 * for as many.
 */
export async function main(argv: string[], early?: CalibrationThreads): Promise<number> {
  const flags = parseFlags(argv);
  const split = splitFlag(flags.split);
  // numbers range-checked before any work
  const gradot = {
    ratio: fractionFlag(flags.ratio, "ratio"),
    attnShare: fractionFlag(flags["attn-share"], "attn-share", true),
    lambdaAttn: nonNegativeFlag(flags["lambda-attn"], "lambda-attn"),
    lambdaMlp: nonNegativeFlag(flags["lambda-mlp"], "lambda-mlp"),
    lambda: nonNegativeFlag(flags.lambda, "lambda"),
    selection: flags.selection as GradotOptions["selection"],
    only: flags.only as GradotOptions["only"],
    keepTopFraction: fractionFlag(flags["keep-top"], "keep-top", true),
    chunk: positiveIntFlag(flags.chunk, "chunk"),
  };
  const workers = positiveIntFlag(flags.workers, "workers");
  const distill = otDistillSettings(distillFromFlags(flags));
  if (flags.method === "gradot") checkGradotVariant(gradot);
  const sequences = positiveIntFlag(flags.sequences, "sequences")!;
  const length = positiveIntFlag(flags.length, "length");
  await checkOutputDir({
    verb: "build-emulator",
    flag: "out",
    path: flags.out,
    kind: { package: "emulator" },
    inputs: { model: flags.model, calibration: needsCalibration(flags.method) ? flags.calibration : undefined },
    force: flags.force,
  });
  removeStaleTemporaries([flags.out, otDistillStatePath(flags.out)]);
  // A pool's threads load their modules while this thread opens the model (docs/DISTRIBUTED.md), if the dispatcher has not
  // started them already; parseFlags let `--workers` past 1 through for GradOT without `--queue` only.
  const threads = workers !== undefined && workers > 1 ? (early?.size === workers ? early : new CalibrationThreads(workers)) : undefined;
  let model: Awaited<ReturnType<typeof openModel>>;
  try {
    await initBackend(flags.backend, flags.quiet);
    // ot-distill trains through the embeddings and head, so they stay resident
    model = await openModel(flags.model, { split, streamVocabulary: flags.method !== "ot-distill" });
  } catch (e) {
    await threads?.close();
    throw e;
  }
  const interrupts = listenForInterrupts();
  const submitter = flags.queue === undefined ? undefined : await JobSubmitter.open(flags.queue);
  let resume: ResumableBuild | undefined;
  try {
    if (flags.method === "gradot") middleBudget(model, gradot); // an unreachable --ratio fails before any work or partial directory
    const progress = createProgress("build-emulator", flags.quiet);
    const draw = progressEvents(progress);
    const perBlock = blockTimings({
      next(e) {
        draw.next(e);
        if (e.stage === "head" && e.loss !== undefined && !flags.quiet) {
          console.error(`calibration loss ${e.loss.toFixed(4)} (perplexity ${Math.exp(e.loss).toFixed(2)})`);
        }
      },
    }, flags["block-lines"] ? (t) => console.log(formatBlockTiming(t)) : undefined);
    const timings = stageTotals(perBlock);
    const started = performance.now();
    let calibration: CalibrationSet | undefined;
    if (needsCalibration(flags.method)) {
      calibration = await loadCalibration(flags.calibration!, model, { sequences, length, quiet: flags.quiet, tokenizer: flags.tokenizer });
    }
    const options = {
      method: flags.method,
      out: flags.out,
      ...gradot,
      ...(flags.method === "gradot" && calibration && workers !== undefined ? { workers, threads } : {}),
      ...flags.scaleot,
      calibration,
      dtype: flags.fp16 ? "float16" as const : "float32" as const,
      tokenizer: flags.tokenizer,
      events: timings,
      signal: interrupts.signal,
      distill,
      ...(submitter ? { queue: { submitter, storage: flags.storage ?? dirname(resolve(flags.out)), keepFiles: flags["keep-slice-files"] } } : {}),
    };
    if (calibration && flags.method === "gradot") {
      resume = openResumableBuild(model, { ...options, calibration }, (message) => {
        if (!flags.quiet) console.error(`build-emulator: ${message}`);
      });
    }
    const shards = await lastValueFrom(buildEmulator(model, { ...options, resume }).pipe(toArray())).catch((e) => {
      progress.finish();
      throw e;
    });
    progress.finish(`${shards.length} shards`);
    const bytes = shards.reduce((n, s) => n + s.bytes, 0);
    const seconds = (performance.now() - started) / 1000;
    console.log(`wrote ${flags.out} (${shards.length} shards, ${(bytes / 1e6).toFixed(2)} MB) in ${seconds.toFixed(1)} s`);
    const ties = tieSummary(((await readManifest(flags.out)).extra?.blocks ?? []) as Parameters<typeof tieSummary>[0]);
    if (ties) console.log(ties);
    if (flags.method === "scaleot") console.log(scaleotSummary(await readManifest(flags.out), model));
    if (flags.timings) {
      await writeFileAtomic(flags.timings, new TextEncoder().encode(JSON.stringify({
        seconds,
        stages: Object.fromEntries(timings.totals),
        peakRssBytes: peakRssBytes(),
        layers: model.cfg.layers,
        tokens: calibration ? calibration.sequences * calibration.length : 0,
        blocks: perBlock.blocks,
      }, null, 2) + "\n"));
    }
    return 0;
  } catch (e) {
    if (!interrupts.received) throw e;
    resume?.discard();
    const kept = flags.method === "ot-distill" && existsSync(otDistillStatePath(flags.out))
      ? `; the distillation's progress is kept in "${otDistillStatePath(flags.out)}" for the next run`
      : "";
    if (!flags.quiet) console.error(`build-emulator: stopped by ${interrupts.received}; temporary files removed, "${flags.out}" untouched${kept}`);
    return signalExitCode(interrupts.received);
  } finally {
    interrupts.close();
    await threads?.close();
    await submitter?.close();
    await model.close();
  }
}
