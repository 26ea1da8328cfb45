/**
 * `readCheckpoint`: the source of a streaming pipeline, one {@link BlockRecord}
 * per transformer block in forward order, each loaded only when the previous
 * one has been handed on (docs/DESIGN.md "The shape": `readCheckpoint(): one
 * BlockRecord per block, lazily, in order`).
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * readCheckpoint(model).pipe(calibrateForward(calibration), ...).subscribe();
 * ```
 *
 * @module
 */
import { concatMap, from, type Observable } from "rxjs";
import { checkpointBoundary } from "../cli/interrupt.ts";
import { blockRole, type BlockRecord, type ModelHandle } from "../records/records.ts";
import { type StageEvents, timeStageAsync } from "../events/stage_events.ts";

/**
 * Emits the blocks of `model` in forward order (`model.blockIndices`: 0..L-1
 * for a checkpoint). A block is read when the one before it has been
 * emitted; a synchronous downstream therefore holds one block at a time.
 * The subscriber owns each record's weights.
 *
 * @param signal checked before each block: once aborted, the stream errors
 *   with its reason there (a block boundary: src/cli/interrupt.ts)
 * @param pace awaited before each block is read: an asynchronous downstream
 *   (`calibrateForward` on a worker pool, its `BlockPace`) holds the reader back
 */
export function readCheckpoint(
  model: ModelHandle,
  events?: StageEvents,
  signal?: AbortSignal,
  pace?: () => Promise<void>,
): Observable<BlockRecord> {
  const { cfg, split } = model;
  return from(model.blockIndices).pipe(
    concatMap((index) =>
      from(
        checkpointBoundary(signal)
          .then(() => pace?.())
          .then(() => timeStageAsync(events, "read", () => model.loadBlock(index), { block: index }))
          .then((weights): BlockRecord => ({
            model,
            index,
            role: blockRole(index, cfg.layers, split),
            weights,
          })),
      )
    ),
  );
}
