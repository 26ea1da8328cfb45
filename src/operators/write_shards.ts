/**
 * `writeShards`: the sink of an emulator (or adapter) pipeline. Writes one
 * Arrow shard per block plus one for the outer weights, then the manifest,
 * all inside a temporary directory renamed into place on completion, so a
 * failed or interrupted run never leaves a half-written package
 * (docs/DESIGN.md "Records and files").
 *
 * Each record is written completely inside `next`: its tensors are copied
 * out and disposed, encoded and written (fsynced) before `next` returns.
 * That is the pipeline's backpressure: an upstream stage emits the next block
 * only after this one is on disk, so shards never queue up in memory behind
 * a busy CPU (docs/DESIGN.md "Scale"; the `write` stage events time all of it).
 * With `blocksElsewhere` (a GradOT build's calibration pool) `next` copies the
 * tensors out and hands the encoding and writing to a pool slot; a block's
 * copy then waits at most behind the requests that slot already has, which
 * on a build are shorter than the next block's calibration.
 *
 * @example
 * ```ts
 * scored.pipe(compressDrd(), compressScp(), writeShards("out/emulator", { method: "gradot", settings }))
 *   .subscribe({ complete: () => console.log("written") });
 * ```
 *
 * @module
 */
import { Observable, type OperatorFunction } from "rxjs";
import { join } from "node:path";
import { createPackageWriter, type Manifest, manifestFormatVersion, type ManifestShard, type PackageWriter, sharedPositions, shardFileName } from "../io/manifest.ts";
import { copyTokenizerFiles, ownTokenizer } from "../io/tokenizer.ts";
import { configSha256, type ShardDtype, type ShardMeta, type ShardTensor, type ShardTensorInput, shapeSize } from "../io/shard_schema.ts";
import { writeShardFile, type WrittenShard } from "../io/shard_writer.ts";
import { vocabularyShardTensors } from "../model/vocabulary.ts";
import type { WeightMap } from "../model/types.ts";
import { type BlockRole, type CompressionNote, everyBlock, type ModelHandle, type ShardRecord } from "../records/records.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";

/** What `writeShards` needs of a record: a block, its weights and how it was compressed. */
export interface WeightedBlock {
  /** The model the block belongs to (its source hash names the package's source). */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The block's weights; the writer disposes them. */
  weights: WeightMap;
  /** What the block was compressed to, for the manifest. */
  compression?: CompressionNote;
}

/** Options of {@link writeShards}. */
export interface WriteShardsOptions {
  /** The method that produced the package (`gradot`, `layerdrop`, …). */
  method: string;
  /** The method's settings (JSON values), stored in every shard and the manifest. */
  settings: Record<string, unknown>;
  /** `emulator` (default) or `adapter`. */
  kind?: Manifest["kind"];
  /** Stored element type (default float32). */
  dtype?: ShardDtype;
  /** Also write the outer weights (embeddings, final norm, head); default true. */
  outer?: boolean;
  /**
   * The original block each position of an emulator runs, for one that
   * drops blocks (OT LayerDrop) or shares them (CRaSh: a middle block
   * repeated at consecutive positions, written once; docs/METHOD.md §3);
   * default the source model's `blockIndices`. An emulator's written blocks
   * must be exactly the distinct ones; the manifest records the list as
   * `blockIndices` unless it is every block once (format version 3 when a
   * block repeats, `manifestFormatVersion`), and a shared block's shard
   * records the positions it runs at (`sharedPositions`).
   */
  blockIndices?: readonly number[];
  /** Extra manifest fields (e.g. parameter counts). */
  extra?: Record<string, unknown>;
  /**
   * The tokenizer.json the package carries (docs/SHARDS.md), with its
   * tokenizer_config.json; default the source model directory's own, when it
   * has one; null for none.
   */
  tokenizer?: string | null;
  /** Receives the seconds of each shard's write. */
  events?: StageEvents;
  /**
   * The outer shard written on another thread, instead of on this one after
   * the last block (a GradOT build's calibration pool: the shard depends on
   * no block, and written here last it was the build's final half second
   * with the worker threads idle; docs/DISTRIBUTED.md "Where 2 slots
   * wait"). `model` is the package's model, so the package's directory is
   * made at subscription and `write` is called then (it may wait for a cue
   * of its own). `write` writes the shard to `path` with `meta` in `dtype`, as
   * {@link writeOuterShardFile} does, and resolves with what it wrote (its
   * columns among it) and its seconds; a rejection fails the package. The
   * manifest lists the shard last all the same. Ignored when `outer` is false.
   */
  outerElsewhere?: {
    model: ModelHandle;
    write(path: string, meta: ShardMeta, dtype: ShardDtype): Promise<OuterShardWritten>;
  };
  /**
   * Each block's shard written on another thread, instead of on this one as
   * the block comes (a GradOT build's calibration pool: a block's shard took
   * this thread 0.15 s at the top of the backward, while the worker thread
   * waited for this thread's chunks; docs/DISTRIBUTED.md "Where 2 slots
   * wait"). It writes `tensors` (copies off this thread's tensor heap, its
   * to move) to `path` with `meta` in `dtype`, as `writeShardFile` does, and
   * resolves with what it wrote and its seconds; a rejection fails the
   * package. The shards are listed, emitted and recorded for a resumed build
   * in the order the blocks came, as when written here.
   */
  blocksElsewhere?: (path: string, meta: ShardMeta, tensors: ShardTensor[], dtype: ShardDtype) => Promise<BlockShardWritten>;
  /**
   * A resumable build (src/io/build_resume.ts): the package is built
   * in its directory, starting from the block shards an earlier run wrote,
   * and each block shard is recorded there once written. On error or
   * unsubscription its directory is left for the owner to keep or discard.
   */
  resume?: ResumableBuild;
}

/** What a write of the outer shard elsewhere returns (`WriteShardsOptions.outerElsewhere`). */
export interface OuterShardWritten {
  bytes: number;
  sha256: string;
  /** The names and shapes of the columns written, in their order: the manifest lists them. */
  tensors: Array<{ name: string; shape: number[] }>;
  /** Wall seconds of the write, reported as a `write` stage event. */
  seconds: number;
}

/** What a write of a block's shard elsewhere returns (`WriteShardsOptions.blocksElsewhere`). */
export type BlockShardWritten = Omit<WrittenShard, "path"> & {
  /** Wall seconds of the write, reported as the block's `write` stage event. */
  seconds: number;
};

const byName = (a: ShardTensorInput, b: ShardTensorInput) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** A weight map's tensors as shard columns (copies off the tensor heap), in name order. */
export function shardTensors(weights: WeightMap): ShardTensor[] {
  return [...weights.entries()]
    .map(([name, t]) => ({ name, shape: [...t.shape], data: t.dataSync() as Float32Array }))
    .sort(byName);
}

/**
 * The outer shard's columns: `outer`, plus a streamed vocabulary's matrices
 * streamed from the checkpoint into the file (never resident whole). Takes
 * only what it reads of a model, so a pool's slot holding the same outer
 * weights and vocabulary writes the same bytes.
 */
export function outerShardTensors(model: Pick<ModelHandle, "outer" | "vocabulary">): ShardTensorInput[] {
  const tensors: ShardTensorInput[] = shardTensors(model.outer);
  if (model.vocabulary) tensors.push(...vocabularyShardTensors(model.vocabulary));
  return tensors.sort(byName);
}

/**
 * Writes the outer shard of `model` ({@link outerShardTensors}) to `path`
 * with `meta` in `dtype` (`writeShardFile`): what a thread that writes it
 * for another (`WriteShardsOptions.outerElsewhere`) returns, but the seconds.
 */
export function writeOuterShardFile(
  model: Pick<ModelHandle, "outer" | "vocabulary">,
  path: string,
  meta: ShardMeta,
  dtype: ShardDtype,
): Omit<OuterShardWritten, "seconds"> {
  const columns = outerShardTensors(model);
  const { bytes, sha256 } = writeShardFile(path, meta, columns, { dtype });
  return { bytes, sha256, tensors: columns.map(({ name, shape }) => ({ name, shape: [...shape] })) };
}

const count = (tensors: ShardTensorInput[]) => tensors.reduce((n, t) => n + shapeSize(t.shape), 0);

/**
 * The manifest's `blockIndices` of an emulator that wrote `written` (sorted)
 * and should run `expected` (non-decreasing; a shared block repeats):
 * undefined when it runs every block once.
 *
 * @throws Error naming the package when the written blocks differ from the distinct expected ones
 */
function emulatorBlockIndices(dir: string, written: number[], expected: readonly number[], layers: number): number[] | undefined {
  const distinct = [...new Set(expected)];
  if (written.join() !== distinct.join()) {
    throw new Error(`writeShards: emulator "${dir}" got blocks ${written.join(", ")} but runs ${expected.join(", ")}`);
  }
  return expected.join() === everyBlock(layers).join() ? undefined : [...expected];
}

/**
 * Writes every incoming block to the package `dir` and emits a
 * {@link ShardRecord} per shard written; commits the package (manifest +
 * rename) when the source completes, aborts it on error or unsubscribe.
 */
export function writeShards(dir: string, options: WriteShardsOptions): OperatorFunction<WeightedBlock, ShardRecord> {
  const dtype = options.dtype ?? "float32";
  return (source) =>
    new Observable<ShardRecord>((subscriber) => {
      const { resume } = options;
      let writer: PackageWriter | undefined;
      let model: ModelHandle | undefined;
      let failed = false;
      const blocks: Array<{ index: number; role: BlockRole; params: number; compression?: CompressionNote }> = [];
      const elsewhere = (options.outer ?? true) ? options.outerElsewhere : undefined;
      let outerWritten: Promise<OuterShardWritten> | undefined;
      /** Block shards being written elsewhere. */
      const blockWrites = new Set<Promise<BlockShardWritten>>();
      /** Settles once every block shard written elsewhere so far is listed (in block order). */
      let listed = Promise.resolve();
      const abort = () => {
        // Once the shards' writes elsewhere have settled: they write into the directory.
        if (!resume) void Promise.allSettled([outerWritten, ...blockWrites]).then(() => writer?.abort());
      };
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        abort();
        subscriber.error(e);
      };
      const start = (m: ModelHandle) => {
        model = m;
        if (!resume) return (writer = createPackageWriter(dir));
        // Shards of an earlier run come first, as they were written; they are reported again.
        const done = resume.blocks;
        writer = createPackageWriter(dir, { temp: resume.dir, shards: done.map((b) => b.shard), sourceHash: m.sourceHash });
        for (const { shard, ...block } of done) {
          blocks.push(block);
          subscriber.next({ block: shard.block, file: shard.file, sha256: shard.sha256, bytes: shard.bytes });
        }
      };
      const shardMeta = (meta: { block: number | "outer"; role: BlockRole | "outer" }): ShardMeta => {
        const positions = sharedPositions(options.blockIndices, meta.block);
        return {
          ...meta,
          ...(positions ? { positions } : {}),
          method: options.method,
          settings: options.settings,
          sourceHash: model!.sourceHash,
          configHash: configSha256(model!.cfg.raw),
        };
      };
      const emit = (written: ManifestShard) => subscriber.next({ block: written.block, file: written.file, sha256: written.sha256, bytes: written.bytes });
      const write = (meta: { block: number | "outer"; role: BlockRole | "outer" }, tensors: ShardTensorInput[]) => {
        const written = writer!.writeShard(shardMeta(meta), tensors, { dtype });
        emit(written);
        return { params: count(tensors), shard: written };
      };
      /** Records a written block shard for the manifest and a resumed build. */
      const recordBlock = (record: WeightedBlock, params: number, shard: ManifestShard) => {
        const block = { index: record.index, role: record.role, params, compression: record.compression };
        blocks.push(block);
        resume?.recordBlock({ ...block, shard });
      };
      /** Has `blocksElsewhere` write the block's shard, and lists it once the blocks before it are. */
      const writeElsewhere = (record: WeightedBlock, writeBlock: NonNullable<WriteShardsOptions["blocksElsewhere"]>) => {
        const meta = shardMeta({ block: record.index, role: record.role });
        const tensors = shardTensors(record.weights);
        const columns = tensors.map(({ name, shape }) => ({ name, shape: [...shape] }));
        const params = count(tensors); // before the arrays move
        const writing = writeBlock(join(writer!.temp, shardFileName(record.index)), meta, tensors, dtype);
        blockWrites.add(writing);
        writing.then(() => blockWrites.delete(writing), fail); // a failure fails the package at once, not in its turn
        listed = listed.then(() => writing).then(({ seconds, ...written }) => {
          if (failed) return;
          const shard = writer!.adoptShard(meta, columns, written, { dtype });
          emit(shard);
          recordBlock(record, params, shard);
          options.events?.next({ stage: "write", block: record.index, seconds });
        });
        listed.catch(fail);
      };
      const outer = { block: "outer", role: "outer" } as const;
      if (elsewhere) {
        try {
          start(elsewhere.model);
          outerWritten = elsewhere.write(join(writer!.temp, shardFileName("outer")), shardMeta(outer), dtype);
          outerWritten.catch(fail);
        } catch (e) {
          fail(e);
        }
      }
      const subscription = source.subscribe({
        next: (record) => {
          if (failed) return disposeWeights(record.weights);
          try {
            if (!model) start(record.model);
            if (options.blocksElsewhere) writeElsewhere(record, options.blocksElsewhere);
            else {
              const { params, shard } = timeStage(options.events, "write", () => write({ block: record.index, role: record.role }, shardTensors(record.weights)), { block: record.index });
              recordBlock(record, params, shard);
            }
          } catch (e) {
            fail(e);
          } finally {
            disposeWeights(record.weights);
          }
        },
        error: fail,
        complete: () => {
          if (!model && resume) start(resume.model); // every block was written by an earlier run
          if (!model) return subscriber.error(new Error(`writeShards: no block arrived, nothing written to "${dir}"`));
          const m = model;
          const w = writer!;
          const kind = options.kind ?? "emulator";
          (async () => {
            await listed;
            if (failed) return;
            // The outer weights (the embeddings: the largest tensor of a big
            // vocabulary) are written last, when no block's statistics or
            // shard copies are alive beside them.
            if (outerWritten) {
              const { seconds, tensors, ...written } = await outerWritten;
              emit(w.adoptShard(shardMeta(outer), tensors, written, { dtype }));
              options.events?.next({ stage: "write", seconds });
            } else if (options.outer ?? true) timeStage(options.events, "write", () => write(outer, outerShardTensors(m)));
            resume?.finish();
            blocks.sort((a, b) => a.index - b.index);
            const blockIndices = kind === "emulator"
              ? emulatorBlockIndices(dir, blocks.map((b) => b.index), options.blockIndices ?? m.blockIndices, m.cfg.layers)
              : undefined;
            const tokenizer = options.tokenizer === undefined ? await ownTokenizer(m.source) : options.tokenizer;
            if (tokenizer) await copyTokenizerFiles(tokenizer, w.temp);
            await w.commit({
              formatVersion: manifestFormatVersion(blockIndices),
              kind,
              architecture: m.cfg.modelType,
              config: m.cfg.raw,
              split: m.split,
              ...(blockIndices ? { blockIndices } : {}),
              method: options.method,
              settings: options.settings,
              sourceHash: m.sourceHash,
              createdAt: new Date().toISOString(),
              extra: { ...options.extra, blocks: JSON.parse(JSON.stringify(blocks)) },
            });
            subscriber.complete();
          })().catch(fail);
        },
      });
      return () => {
        subscription.unsubscribe();
        if (!subscriber.closed && !failed) abort();
      };
    });
}
