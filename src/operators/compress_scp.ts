/**
 * `compressScp`: Selective Channel Pruning of each middle block's MLP
 * (docs/METHOD.md §2 SCP): keep the intermediate channels of largest GCS up to the
 * budget width m' (equal GCS: the larger channel magnitude first) and physically remove the rest (producer columns and bias
 * entries, consumer rows; gate/up/down together on SwiGLU).
 *
 * @example
 * ```ts
 * scoreGcs(lambdas).pipe(compressDrd({ ratio: 0.5 }), compressScp({ ratio: 0.5 }))
 * ```
 *
 * @module
 */
import { map, type OperatorFunction } from "rxjs";
import type { BudgetOptions } from "../compress/budget.ts";
import { channelMagnitudes, pruneMlp, selectScpChannels } from "../compress/scp.ts";
import type { SelectionKind } from "../compress/select.ts";
import type { ScoredBlockRecord } from "../records/records.ts";
import { middleBudget } from "../compress/budget_plan.ts";
import { MLP_PART, mlpSpecs, readMlp, writeMlp } from "../model/mlp_view.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";

/**
 * Prunes every scored middle block's MLP to the budget width, by GCS (ties
 * by channel magnitude) or, with `selection: "magnitude"`, by channel
 * magnitude alone; `only: "drd"` passes the MLP through whole.
 */
export function compressScp(
  options: BudgetOptions & {
    /** What ranks the channels (default `gcs`). */
    selection?: SelectionKind;
    /** Receives the seconds of each block's pruning. */
    events?: StageEvents;
    /** The parts being compressed (`GcsOptions.parts`): without `mlp`, the MLP passes through as it came. */
    parts?: readonly string[];
  } = {},
): OperatorFunction<ScoredBlockRecord, ScoredBlockRecord> {
  return map((record) => timeStage(options.events, "compress", () => {
    if (record.role !== "middle" || (options.parts && !options.parts.includes(MLP_PART))) return record;
    if (options.only === "drd") return { ...record, scp: undefined }; // the MLP kept whole (docs/METHOD.md §2 "Ablations")
    if (!record.scp) throw new Error(`compressScp: block ${record.index} has no SCP scores (run scoreGcs first)`);
    const { width } = middleBudget(record.model, options);
    const specs = mlpSpecs(record.model.arch.linears(record.model.cfg));
    const mlp = readMlp(record.weights, specs);
    const { kept, tie } = selectScpChannels(record.scp, channelMagnitudes(mlp), width, options.selection);
    writeMlp(record.weights, specs, pruneMlp(mlp, kept));
    const compression = record.compression;
    return { ...record, scp: undefined, compression: { ...compression, width, ties: { ...compression.ties, scp: tie } } };
  }, { block: record.index }));
}
