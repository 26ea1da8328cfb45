/**
 * `offtune bench scale`: a GradOT emulator build at LLaMA-7B shape and at
 * OPT-1.3B shape with a short calibration (docs/GRADOT.md "7B shape"). Random
 * fp16 checkpoints are written to a temporary directory sharded as Hugging
 * Face does (`model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`
 * + `config.json`), read back as such, and each build runs in its own process
 * (`offtune build-emulator --timings --block-lines`) so its peak RSS is its
 * own. Reported: peak RSS, the RSS after the first and the last middle block
 * finished (flat across depth when streaming works), seconds per middle block
 * by stage, and those seconds projected to the 2,048 calibration tokens of
 * `bench gradot`: forward, backward, KFAC and the head's loss scale with the
 * tokens, reading, SVD, scoring, compression and writing are taken as
 * measured. Everything written is deleted at the end, on error and on
 * SIGINT/SIGTERM too.
 *
 * @module
 */
import { closeSync, openSync, readSync, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";
import type { BenchRow } from "./linalg.ts";
import { openCheckpoint } from "../io/checkpoint.ts";
import type { BlockTiming } from "../events/block_timings.ts";
import type { Stage } from "../events/stage_events.ts";
import {
  LLAMA_7B,
  type ModelShape,
  OPT_SHAPES,
  type RandomCheckpointOptions,
  writeRandomLlama,
  writeRandomOpt,
  writeRandomTokens,
} from "../train/random_checkpoint.ts";
import { runVerb } from "../cli/run_verb.ts";
import { signalExitCode } from "../cli/interrupt.ts";

/** The calibration tokens the projection is made to: `bench gradot`'s 16 × 128 (docs/GRADOT.md "Benchmarks"). */
export const PROJECTED_TOKENS = 2048;

/** Stages whose work is proportional to the calibration tokens (projected by tokens ratio). */
export const TOKEN_STAGES: readonly Stage[] = ["forward", "backward", "kfac", "head"];

/** Options of {@link benchScale}. */
export interface ScaleBenchOptions {
  /** Tiny shapes of the same kinds (a smoke run: kilobytes, seconds). */
  quick?: boolean;
  /** Directory the temporary work directory is made in (default the OS's tmpdir); needs about 37 GB free for the 7B shape (checkpoint and float32 emulator). */
  dir?: string;
  /** Calibration sequences (default 2). */
  sequences?: number;
  /** Tokens per calibration sequence (default 128; 32 with `quick`). */
  length?: number;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
  /** Called with a line of progress (checkpoint writing, each block of a build). */
  onProgress?: (line: string) => void;
}

/** A model the bench writes and builds. */
interface ScaleModel {
  name: string;
  params: number;
  write: (dir: string, onTensor: (done: number, total: number) => void) => Promise<void>;
  vocabSize: number;
}

/** What `build-emulator --timings` writes (pipelines/build_emulator.ts), the input of {@link scaleRows}. */
export interface BuildTimings {
  /** Wall seconds of the build. */
  seconds: number;
  /** Seconds per stage over the whole build. */
  stages: Partial<Record<Stage, number>>;
  /** The build process's peak RSS, bytes. */
  peakRssBytes: number;
  /** Blocks of the model. */
  layers: number;
  /** Calibration tokens, counted as sequences × length. */
  tokens: number;
  /** Per block, in the order blocks finished (src/events/block_timings.ts). */
  blocks: BlockTiming[];
}

const MiB = 2 ** 20;

/** LLaMA parameters of shape `p` (untied head, no biases). */
function llamaParams(p: ModelShape): number {
  const block = 4 * p.hidden * p.hidden + 3 * p.hidden * p.ffn + 2 * p.hidden;
  return p.layers * block + 2 * p.vocabSize * p.hidden + p.hidden;
}

/** OPT parameters of shape `p` (tied head, biases, learned positions with HF's offset 2). */
function optParams(p: ModelShape): number {
  const d = p.hidden;
  const block = 4 * d * d + 4 * d + 2 * d * p.ffn + p.ffn + d + 4 * d;
  return p.layers * block + p.vocabSize * d + (p.maxPositions + 2) * d + 2 * d;
}

/** A model the bench writes with `write` (a random checkpoint of one shape, {@link RandomCheckpointOptions}). */
function scaleModel(
  name: string,
  shape: ModelShape,
  params: number,
  maxShardBytes: number,
  write: (dir: string, shape: ModelShape, options: RandomCheckpointOptions) => Promise<void>,
): ScaleModel {
  return { name, params, vocabSize: shape.vocabSize, write: (dir, onTensor) => write(dir, shape, { maxShardBytes, onTensor }) };
}

const llamaModel = (name: string, shape: ModelShape, maxShardBytes: number) => scaleModel(name, shape, llamaParams(shape), maxShardBytes, writeRandomLlama);
const optModel = (name: string, shape: ModelShape, maxShardBytes: number) =>
  scaleModel(name, shape, optParams(shape), maxShardBytes, (dir, p, options) => writeRandomOpt(dir, { ...p, bosId: 2, eosId: 2, padId: 1 }, options));

/**
 * The models: LLaMA-7B in ~2 GB shards and OPT-1.3B in ~1 GB shards, or
 * with `quick` tiny ones of the same kinds in shards of 256 KiB, so they
 * are sharded too.
 */
function scaleModels(quick: boolean): ScaleModel[] {
  if (quick) {
    const tiny = { layers: 6, hidden: 64, heads: 4, ffn: 176, maxPositions: 64, vocabSize: 256 };
    return [llamaModel("llama-tiny", tiny, 256 * 1024), optModel("opt-tiny", { ...tiny, ffn: 256 }, 256 * 1024)];
  }
  return [llamaModel("llama-7b", LLAMA_7B, 2_000_000_000), optModel("opt-1.3b", OPT_SHAPES["opt-1.3b"], 1_000_000_000)];
}

/**
 * Bytes a model needs on disk while it is benchmarked: its fp16 checkpoint
 * (2 bytes a parameter) and the float32 emulator built from it (adapter
 * blocks and outer weights whole, the middle at ratio 0.5: under 3 bytes a
 * parameter), with a margin.
 */
function diskNeeded(params: number): number {
  return Math.ceil(5.5 * params);
}

async function checkDisk(dir: string, models: ScaleModel[]): Promise<void> {
  const needed = Math.max(...models.map((m) => diskNeeded(m.params)));
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free < needed) {
    throw new Error(
      `bench scale: "${dir}" has ${(free / 1e9).toFixed(1)} GB free but the largest model needs about ${(needed / 1e9).toFixed(1)} GB ` +
        "(checkpoint and emulator): choose another directory with --dir",
    );
  }
}

/**
 * Follows a growing log file: calls `onLine` with each complete new line,
 * every `intervalMs`, until the returned function is called (which reads
 * what is left).
 */
function followLog(path: string, onLine: (line: string) => void, intervalMs = 1000): () => void {
  let offset = 0;
  let partial = "";
  const decoder = new TextDecoder(); // streaming: a character split across reads decodes whole
  const poll = () => {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return; // not created yet
    }
    try {
      const buffer = new Uint8Array(64 * 1024);
      for (let n; (n = readSync(fd, buffer, 0, buffer.length, offset)) > 0;) {
        offset += n;
        partial += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
    } finally {
      closeSync(fd);
    }
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  };
  const timer = setInterval(poll, intervalMs);
  return () => {
    clearInterval(timer);
    poll();
  };
}

/** Mean seconds per stage over `blocks`. */
function meanStages(blocks: BlockTiming[]): Map<Stage, number> {
  const sums = new Map<Stage, number>();
  for (const b of blocks) {
    for (const [stage, s] of Object.entries(b.stages) as Array<[Stage, number]>) sums.set(stage, (sums.get(stage) ?? 0) + s);
  }
  return new Map([...sums].map(([stage, s]) => [stage, s / blocks.length]));
}

/** The rows of one build's timings (module doc: what is measured and projected). */
export function scaleRows(name: string, t: BuildTimings): BenchRow[] {
  const rows: BenchRow[] = [];
  const ratio = PROJECTED_TOKENS / t.tokens;
  const middle = t.blocks.filter((b) => b.stages.score !== undefined); // only middle blocks are scored
  if (middle.length === 0) throw new Error(`bench scale: the ${name} build reported no middle block`);
  rows.push({ name: `${name}: calibration tokens`, value: t.tokens, unit: "tokens" });
  rows.push({ name: `${name}: build total`, value: t.seconds, unit: "s", note: `${t.layers} blocks, ${middle.length} middle` });
  rows.push({ name: `${name}: peak RSS`, value: t.peakRssBytes / MiB, unit: "MiB" });
  const [first, last] = [middle[0], middle[middle.length - 1]];
  rows.push({ name: `  RSS after the first middle block (${first.block})`, value: first.rssBytes / MiB, unit: "MiB", note: `peak so far ${(first.peakRssBytes / MiB).toFixed(0)} MiB` });
  rows.push({ name: `  RSS after the last middle block (${last.block})`, value: last.rssBytes / MiB, unit: "MiB", note: `peak so far ${(last.peakRssBytes / MiB).toFixed(0)} MiB` });
  rows.push({
    name: "  peak RSS growth, first to last middle block",
    value: (last.peakRssBytes - first.peakRssBytes) / MiB,
    unit: "MiB",
    note: `over ${middle.length - 1} blocks`,
  });
  const mean = meanStages(middle);
  let measured = 0;
  let projected = 0;
  for (const [stage, s] of mean) {
    const scales = TOKEN_STAGES.includes(stage);
    measured += s;
    projected += scales ? s * ratio : s;
    rows.push({ name: `  ${stage} per middle block`, value: s, unit: "s", note: scales ? "scales with tokens" : "fixed" });
  }
  for (const [stage, s] of mean) {
    if (TOKEN_STAGES.includes(stage)) {
      rows.push({ name: `  ${stage} per middle block at ${PROJECTED_TOKENS} tokens`, value: s * ratio, unit: "s", note: "projected" });
    }
  }
  rows.push({ name: "  per middle block", value: measured, unit: "s" });
  rows.push({ name: `  per middle block at ${PROJECTED_TOKENS} tokens`, value: projected, unit: "s", note: "projected" });
  const tokenSeconds = TOKEN_STAGES.reduce((n, stage) => n + (t.stages[stage] ?? 0), 0);
  rows.push({
    name: `${name}: build at ${PROJECTED_TOKENS} tokens`,
    value: t.seconds + (ratio - 1) * tokenSeconds,
    unit: "s",
    note: `projected: ${TOKEN_STAGES.join(", ")} x ${ratio.toFixed(2)}`,
  });
  return rows;
}

/** The checkpoint's shard files, checked to be read back through its index.json. */
async function shardedCheckpoint(dir: string): Promise<{ shards: number; bytes: number }> {
  const reader = await openCheckpoint(dir);
  try {
    const files = new Set(reader.tensors().map((t) => basename(t.file)));
    if (files.size < 2 || [...files].some((f) => !/^model-\d{5}-of-\d{5}\.safetensors$/.test(f))) {
      throw new Error(`bench scale: "${dir}" was not written as HF shards: ${[...files].join(", ")}`);
    }
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as { metadata?: { total_size?: number } };
    return { shards: files.size, bytes: index.metadata?.total_size ?? 0 };
  } finally {
    await reader.close();
  }
}

/**
 * Removes `work` when the process exits or is stopped, until the returned
 * function is called: a SIGINT or SIGTERM while no build runs removes it and
 * exits with the signal's status; while a build runs, `runVerb` passes the
 * signal on and exits once the build stopped, and the exit handler removes it.
 */
function removeOnExit(work: string): () => void {
  const remove = () => rmSync(work, { recursive: true, force: true });
  const stop = (signal: "SIGINT" | "SIGTERM") => () => {
    if (process.listenerCount(signal) === 1) process.exit(signalExitCode(signal)); // runs `remove`
  };
  const onInt = stop("SIGINT");
  const onTerm = stop("SIGTERM");
  process.on("exit", remove);
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return () => {
    process.off("exit", remove);
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
  };
}

/** Writes, reads back and builds each model (module doc), then deletes everything it wrote. */
export async function benchScale(options: ScaleBenchOptions = {}): Promise<BenchRow[]> {
  const quick = options.quick ?? false;
  const sequences = options.sequences ?? 2;
  const length = options.length ?? (quick ? 32 : 128);
  const progress = options.onProgress ?? (() => {});
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    options.onRow?.(row);
  };
  const models = scaleModels(quick);
  const parent = options.dir ?? tmpdir();
  await checkDisk(parent, models);
  const work = await mkdtemp(join(parent, "offtune-bench-scale-"));
  const release = removeOnExit(work);
  try {
    for (const m of models) {
      const dir = join(work, m.name);
      const started = performance.now();
      let shown = -1;
      await m.write(dir, (done, total) => {
        const tenth = Math.floor((10 * done) / total);
        if (tenth === shown) return;
        shown = tenth;
        progress(`${m.name}: writing the checkpoint, ${done}/${total} tensors (${((performance.now() - started) / 1000).toFixed(0)} s)`);
      });
      const written = (performance.now() - started) / 1000;
      const { shards, bytes } = await shardedCheckpoint(dir);
      emit({ name: `${m.name}: checkpoint (random, fp16)`, value: bytes / 1e9, unit: "GB", note: `${shards} shards + model.safetensors.index.json, written in ${written.toFixed(0)} s` });
      const calibration = join(work, `${m.name}.bin`);
      await writeRandomTokens(calibration, m.vocabSize, sequences * length);
      const timings = join(work, `${m.name}.json`);
      const log = join(work, `${m.name}.log`);
      progress(`${m.name}: building the GradOT emulator (${sequences} x ${length} calibration tokens)`);
      // the build's whole output (its block lines, the loss, an error) reaches the bench's progress: its log is deleted with the rest
      const stopFollowing = followLog(log, (line) => {
        if (line.trim() !== "") progress(`${m.name}: ${line}`);
      });
      try {
        await runVerb([
          "build-emulator", "--model", dir, "--calibration", calibration, "--out", join(work, "emulator"),
          "--sequences", String(sequences), "--length", String(length), "--timings", timings, "--block-lines",
        ], log);
      } finally {
        stopFollowing();
      }
      for (const row of scaleRows(m.name, JSON.parse(await readFile(timings, "utf8")) as BuildTimings)) emit(row);
      await rm(dir, { recursive: true, force: true });
      await rm(join(work, "emulator"), { recursive: true, force: true });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
    release();
  }
  return rows;
}
