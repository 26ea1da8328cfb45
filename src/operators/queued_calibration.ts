/**
 * `queuedCalibration`: a GradOT build's calibration (forward, head, backward)
 * as jobs of a queue, data-parallel over slices of the calibration set
 * (docs/DISTRIBUTED.md "Calibration slices"); it stands for
 * `readCheckpoint → calibrateForward → calibrateBackward → accumulateKfac`
 * and emits the same {@link StatsRecord}s, blocks L-1..0.
 *
 * The slices (`calibrationSlices`: bounds of the block and head chunks, the
 * same for any number of workers) are written as `.slice` files to
 * `<storage>/slices/` and submitted at once as jobs `offtune gradot-slice`.
 * Each job writes its head chunks' summed losses and, per middle block and
 * chunk, every linear's `x` and `γ` (src/distributed/slice_files.ts). This
 * process adds the losses, then, block by block from the top, waits for the
 * block's chunk files, reads them one at a time in chunk order (slice by
 * slice) into the block's KFAC sums and channel products (`BlockKfacSums`,
 * `BlockChannelProducts`, as `accumulateKfac` does), and emits the block with its reloaded weights: the factors are
 * the bytes of a one-process build. The block's files are deleted once read
 * (with a `resume`, once its shard is written, so a rerun after a crash
 * still finds them). Blocks an earlier run wrote (`resume`) are skipped. A
 * job whose files are gone once it completed (deleted by an earlier run of
 * the build) is run again.
 *
 * @module
 */
import { existsSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Observable } from "rxjs";
import { checkpointBoundary } from "../cli/interrupt.ts";
import { calibrationSlices } from "../distributed/calibration_slices.ts";
import type { JobSubmitter, VerbJob } from "../distributed/job_queue.ts";
import {
  readSliceChunk,
  readSliceLoss,
  sliceChunkFile,
  sliceLossFile,
  sliceOutDir,
  writeSliceJob,
} from "../distributed/slice_files.ts";
import { type StageEvents, timeStage, timeStageAsync } from "../events/stage_events.ts";
import { defaultChunk, sequenceChunks } from "../io/activation_store.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { disposeWeights } from "../model/weights.ts";
import { blockRole, type CalibrationSet, type ModelHandle, type StatsRecord } from "../records/records.ts";
import { BlockKfacSums } from "./accumulate_kfac.ts";
import { BlockChannelProducts } from "./block_channel_products.ts";
import { chunkRecords, defaultHeadChunkOf } from "./calibrate_backward.ts";

/** Options of {@link queuedCalibration}. */
export interface QueuedCalibrationOptions {
  /** The queue the slice jobs go to. */
  submitter: JobSubmitter;
  /** The shared directory the slice files go to (in its `slices/`). */
  storage: string;
  /** The package being built: its slices are its own (`SliceJob.build`). */
  out: string;
  /** The calibration token ids (N sequences of T tokens). */
  calibration: CalibrationSet;
  /** Sequences per calibration chunk (default: `defaultChunk`, as one process). */
  chunk?: number;
  /** Receives the seconds of reading blocks and files and of the KFAC sums, and the `head` event with the loss. */
  events?: StageEvents;
  /** Checked before each block and while waiting: once aborted, the stream errors with its reason. */
  signal?: AbortSignal;
  /** A resumable build: its written blocks are skipped, its recorded loss reused (src/io/build_resume.ts). */
  resume?: ResumableBuild;
  /**
   * Keep the slice files (default: a block's chunk files are deleted once
   * read, with a `resume` once its shard is written; the slices' directories
   * once every shard is).
   */
  keepFiles?: boolean;
  /** Told once every slice's forward has run (their losses are in), before the first block is emitted. */
  onForward?: () => void;
}

/** How often a missing slice file is looked for, in ms. */
const POLL_MS = 100;

/** One slice's job: submitted at once; its files are waited for one by one. */
class SliceRun {
  readonly #submitter: JobSubmitter;
  readonly #job: VerbJob;
  #settled: Promise<void>;
  #reruns = 0;

  constructor(submitter: JobSubmitter, job: VerbJob, readonly input: string, readonly out: string, readonly chunks: number) {
    this.#submitter = submitter;
    this.#job = job;
    this.#settled = this.#submit();
  }

  #submit(): Promise<void> {
    const run = this.#submitter.run(this.#job);
    run.catch(() => {}); // reported by the wait that meets it
    return run;
  }

  /**
   * Resolves once `path` exists (written atomically: whole), rejects with the
   * job's error when it failed. A job that completed without it is run once
   * more (an earlier run of the build read and deleted it).
   */
  async waitFor(path: string, signal?: AbortSignal): Promise<void> {
    while (!existsSync(path)) {
      await checkpointBoundary(signal);
      const done = await Promise.race([this.#settled.then(() => true), sleep(POLL_MS).then(() => false)]);
      if (!done || existsSync(path)) continue;
      if (this.#reruns++ > 0) throw new Error(`The slice job "offtune ${this.#job.args.join(" ")}" completed without writing "${path}"`);
      this.#settled = this.#submit();
    }
  }

  /** Resolves once the job's latest run completed. */
  finished(): Promise<void> {
    return this.#settled;
  }
}

/** Writes the slices' `.slice` files and submits their jobs, asking for the files this build still needs. */
async function submitSlices(model: ModelHandle, o: QueuedCalibrationOptions, chunk: number, needed: number[], needLoss: boolean): Promise<SliceRun[]> {
  const { calibration } = o;
  const t = calibration.length;
  const dir = join(resolve(o.storage), "slices");
  const headChunk = defaultHeadChunkOf(model, t);
  const runs: SliceRun[] = [];
  for (const { from, to } of calibrationSlices(calibration.sequences, t, chunk, headChunk)) {
    const input = await writeSliceJob(dir, {
      build: resolve(o.out),
      model: { dir: resolve(model.source), sourceHash: model.sourceHash, split: model.split, streamVocabulary: model.vocabulary !== undefined },
      from,
      to,
      length: t,
      ids: calibration.ids.slice(from * t, to * t),
      chunk,
      headChunk,
    });
    const out = sliceOutDir(input);
    const chunks = sequenceChunks(to - from, chunk).length;
    const outputs = [
      ...(needLoss ? [sliceLossFile(out)] : []),
      ...needed.flatMap((i) => Array.from({ length: chunks }, (_, k) => sliceChunkFile(out, i, k))),
    ];
    runs.push(new SliceRun(o.submitter, { args: ["gradot-slice", "--input", input, "--out", out], inputs: [input], outputs }, input, out, chunks));
  }
  return runs;
}

/** The calibration loss from the slices' files: their head chunks' sums added in chunk order, as one process adds them. */
async function sliceLoss(slices: SliceRun[], o: QueuedCalibrationOptions): Promise<number> {
  let lossSum = 0;
  for (const slice of slices) {
    const path = sliceLossFile(slice.out);
    await slice.waitFor(path, o.signal);
    for (const sum of await readSliceLoss(path)) lossSum += sum;
  }
  return lossSum / (o.calibration.sequences * (o.calibration.length - 1));
}

/** Deletes `paths` (unless the files are kept) once block `index`'s shard is written, so a rerun of a resumable build still finds them till then. */
function dropOnceWritten(paths: string[], index: number | undefined, o: QueuedCalibrationOptions): void {
  if (o.keepFiles) return;
  const drop = () => paths.forEach((path) => rmSync(path, { force: true }));
  if (o.resume && index !== undefined) o.resume.whenWritten(index, drop);
  else drop();
}

/** Middle block `index`'s factors and channel products from its chunk files, slice by slice and chunk by chunk. */
async function blockFactors(model: ModelHandle, index: number, slices: SliceRun[], o: QueuedCalibrationOptions): Promise<Pick<StatsRecord, "stats" | "channelProducts">> {
  const specs = model.arch.linears(model.cfg);
  const sums = new BlockKfacSums();
  const products = new BlockChannelProducts();
  const read: string[] = [];
  for (const slice of slices) {
    for (let k = 0; k < slice.chunks; k++) {
      const path = sliceChunkFile(slice.out, index, k);
      await slice.waitFor(path, o.signal);
      const { linears } = await timeStageAsync(o.events, "read", () => readSliceChunk(path, index, k), { block: index });
      timeStage(o.events, "kfac", () =>
        chunkRecords(specs, index, linears).forEach((record) => {
          sums.add(record);
          products.add(record);
        }), { block: index });
      read.push(path);
    }
  }
  dropOnceWritten(read, index, o);
  return timeStage(o.events, "kfac", () => {
    const stats = sums.finalize(index);
    const channelProducts = products.finalize(index);
    return { stats, ...(channelProducts ? { channelProducts } : {}) };
  }, { block: index });
}

/** Resolves once the shards of `blocks` are all written (at once without a resumable build: nothing would read their files again). */
function allWritten(blocks: number[], resume: ResumableBuild | undefined): Promise<void> {
  return Promise.all(blocks.map((index) => new Promise<void>((done) => (resume ? resume.whenWritten(index, done) : done())))).then(() => {});
}

/** The body of {@link queuedCalibration}: emits each block's record; stops at the next block or wait once `o.signal` is aborted. */
async function run(model: ModelHandle, o: QueuedCalibrationOptions, emit: (record: StatsRecord) => void): Promise<void> {
  const { cfg, split } = model;
  const { calibration, resume, events } = o;
  const chunk = o.chunk ?? defaultChunk(calibration, cfg);
  const roles = model.blockIndices.map((i) => blockRole(i, cfg.layers, split));
  const needed = model.blockIndices.filter((i, k) => roles[k] === "middle" && !resume?.isDone(i));
  const needLoss = resume?.loss === undefined;
  const slices = needed.length > 0 || needLoss ? await submitSlices(model, o, chunk, needed, needLoss) : [];
  const loss = needLoss ? await sliceLoss(slices, o) : resume!.loss!;
  if (needLoss) {
    resume?.recordLoss(loss);
    dropOnceWritten(slices.map((s) => sliceLossFile(s.out)), undefined, o);
  }
  events?.next({ stage: "head", seconds: 0, loss, tokens: calibration.sequences * (calibration.length - 1) });
  o.onForward?.();
  for (let k = model.blockIndices.length - 1; k >= 0; k--) {
    const index = model.blockIndices[k];
    await checkpointBoundary(o.signal);
    if (resume?.isDone(index)) continue;
    const statistics = roles[k] === "middle" ? await blockFactors(model, index, slices, o) : { stats: new Map() };
    const weights = await timeStageAsync(events, "read", () => model.loadBlock(index), { block: index });
    if (o.signal?.aborted) disposeWeights(weights);
    await checkpointBoundary(o.signal);
    emit({ model, index, role: roles[k], weights, ...statistics });
  }
  await Promise.all(slices.map((s) => s.finished())); // a job rerun writes again: remove its directory only once it is done
  if (o.keepFiles) return;
  // Removed once every shard they fed is written (the stream completes before the last compressions return).
  void allWritten(needed, resume).then(() => {
    for (const slice of slices) {
      rmSync(slice.out, { recursive: true, force: true });
      rmSync(slice.input, { force: true });
    }
  });
}

/**
 * The stats records of `model`'s blocks, L-1..0 (the module doc). Each
 * subscription is one calibration; unsubscribing stops it at the next
 * block or file (the jobs already submitted run on).
 */
export function queuedCalibration(model: ModelHandle, options: QueuedCalibrationOptions): Observable<StatsRecord> {
  return new Observable<StatsRecord>((subscriber) => {
    const unsubscribed = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, unsubscribed.signal]) : unsubscribed.signal;
    run(model, { ...options, signal }, (record) => subscriber.next(record)).then(
      () => subscriber.complete(),
      (e) => subscriber.error(e),
    );
    return () => unsubscribed.abort(new Error("queuedCalibration: unsubscribed"));
  });
}
