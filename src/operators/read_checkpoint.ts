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
import { blockRole, type BlockRecord, type ModelHandle } from "../records/records.ts";
import { type StageClock, timeStageAsync } from "./stage_clock.ts";

/**
 * Emits the blocks of `model` in forward order (`model.blockIndices`: 0..L-1
 * for a checkpoint). A block is read when the one before it has been
 * emitted; a synchronous downstream therefore holds one block at a time.
 * The subscriber owns each record's weights.
 */
export function readCheckpoint(model: ModelHandle, clock?: StageClock): Observable<BlockRecord> {
  const { cfg, split } = model;
  return from(model.blockIndices).pipe(
    concatMap((index) =>
      from(
        timeStageAsync(clock, "read", () => model.loadBlock(index)).then((weights): BlockRecord => ({
          model,
          index,
          role: blockRole(index, cfg.layers, split),
          weights,
        })),
      )
    ),
  );
}
