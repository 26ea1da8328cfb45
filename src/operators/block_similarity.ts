/**
 * `blockSimilarity`: from the calibration forward's activation records, the
 * linear CKA between the outputs of every pair of middle blocks (docs/METHOD.md
 * §3 "CRaSh"; the numerics in `src/stats/cka.ts`). The output of block `i` is
 * the input of block `i + 1`, which `calibrateForward` keeps on disk (the
 * last block's output rides on the last record), so no block is recomputed.
 * The outputs of middle blocks are kept until the stream completes; every
 * other array is released as it passes, and the pass's store is closed
 * when this operator ends, however it ends.
 *
 * @example
 * ```ts
 * readCheckpoint(model).pipe(calibrateForward({ calibration }), blockSimilarity())
 * ```
 *
 * @module
 */
import { defer, ignoreElements, of, concatWith, finalize, type OperatorFunction, tap } from "rxjs";
import { defaultChunk, sequenceChunks, type ActivationStore, type StoredActivations } from "../io/activation_store.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { type ActivationRecord, blockRole, type BlockSimilarityRecord, everyBlock } from "../records/records.ts";
import { type ChunkedRows, ckaMatrix } from "../stats/cka.ts";

/** Options of {@link blockSimilarity}. */
export interface BlockSimilarityOptions {
  /** Sequences per chunk read back from the store (default: `defaultChunk`). */
  chunk?: number;
  /** Receives the seconds of the CKA computation (stage `score`). */
  events?: StageEvents;
}

/** A stored `[N, T, d]` array read as `[tokens, d]` row chunks of whole sequences. */
function storedRows(stored: StoredActivations, chunk: number): ChunkedRows {
  const ranges = sequenceChunks(stored.sequences, chunk);
  return {
    width: stored.width,
    chunks: ranges.length,
    read: (k) => {
      const [from, to] = ranges[k];
      return { rows: (to - from) * stored.length, cols: stored.width, data: stored.read(from, to) }; // [(to−from)·T, d]
    },
  };
}

/**
 * Takes the activation records of one calibration forward over a whole
 * model (blocks `0..L-1` in order) and emits one {@link BlockSimilarityRecord}
 * of its middle blocks when they are complete.
 *
 * @throws Error (the stream's) when the model has no middle block or a middle
 *   block's output did not arrive
 */
export function blockSimilarity(options: BlockSimilarityOptions = {}): OperatorFunction<ActivationRecord, BlockSimilarityRecord> {
  return (source) =>
    defer(() => {
      const outputs = new Map<number, StoredActivations>(); // middle block → its output [N, T, d]
      let first: ActivationRecord | undefined;
      let store: ActivationStore | undefined;
      const keep = (block: number, array: StoredActivations | undefined, record: ActivationRecord) => {
        if (!array) return;
        const { layers } = record.model.cfg;
        if (block >= 0 && blockRole(block, layers, record.model.split) === "middle") outputs.set(block, array);
        else array.dispose();
      };
      const similarity = (): BlockSimilarityRecord => {
        if (!first) throw new Error("blockSimilarity: no activation record arrived");
        const { model, calibration } = first;
        const { layers } = model.cfg;
        const blocks = everyBlock(layers).filter((i) => blockRole(i, layers, model.split) === "middle");
        if (blocks.length === 0) {
          throw new Error(`blockSimilarity: split ${model.split.bottom}+${model.split.top} of "${model.source}" (${layers} blocks) leaves no middle block`);
        }
        const missing = blocks.find((i) => !outputs.has(i));
        if (missing !== undefined) throw new Error(`blockSimilarity: the output of middle block ${missing} did not arrive (incomplete forward)`);
        const chunk = options.chunk ?? defaultChunk(calibration, model.cfg);
        const reps = blocks.map((i) => storedRows(outputs.get(i)!, chunk));
        const cka = timeStage(options.events, "score", () => ckaMatrix(reps), { tokens: calibration.sequences * calibration.length }); // [M, M]
        return { model, blocks, cka };
      };
      return source.pipe(
        tap((record) => {
          first ??= record;
          store ??= record.store;
          keep(record.index - 1, record.input, record); // block i's input is block i−1's output
          keep(record.index, record.output, record);
        }),
        ignoreElements(),
        concatWith(defer(() => of(similarity()))),
        finalize(() => store?.close()),
      );
    });
}
