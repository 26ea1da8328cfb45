/**
 * `compressDrd`: Dynamic Rank Decomposition of the attention projections of
 * each middle block (docs/METHOD.md §2 DRD): keep the top 5% of components by
 * singular value, fill the rank budget with the largest GCS, and store the
 * factors `weight_u` `[in, r]` / `weight_v` `[r, out]` (a low-rank linear in
 * the block function), or the dense product when factors would not be smaller.
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
import { compressDrd as compressProjection, type DrdOptions } from "../compress/drd.ts";
import type { ScoredBlockRecord } from "../records/records.ts";
import type { TieNote } from "../compress/select.ts";
import { middleBudget } from "../compress/budget_plan.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { fromMatrix, replaceWeight } from "../model/weights.ts";

/** The budget knob (same for `compressScp`) plus DRD's always-kept fraction and the selection; `only: "scp"` passes attention through whole. */
export type CompressDrdOptions = BudgetOptions & DrdOptions & {
  /** Receives the seconds of each block's compression. */
  events?: StageEvents;
};

/** Replaces every scored attention projection of a middle block by its DRD compression. */
export function compressDrd(options: CompressDrdOptions = {}): OperatorFunction<ScoredBlockRecord, ScoredBlockRecord> {
  return map((record) => timeStage(options.events, "compress", () => {
    if (record.role !== "middle") return record;
    if (options.only === "scp") { // attention kept whole (docs/METHOD.md §2 "Ablations")
      record.drd.clear();
      return record;
    }
    const budget = middleBudget(record.model, options);
    const ranks: Record<string, number> = {};
    const ties: Record<string, TieNote> = {};
    for (const [name, { svd, scores }] of record.drd) {
      const rank = budget.ranks.get(name);
      if (rank === undefined) throw new Error(`compressDrd: the budget has no rank for "${name}"`);
      const result = compressProjection(svd, scores, rank, options);
      if (result.kind === "lowRank") {
        record.weights.get(`${name}.weight`)?.dispose();
        record.weights.delete(`${name}.weight`);
        replaceWeight(record.weights, `${name}.weight_u`, fromMatrix(result.weightU)); // [in, r]
        replaceWeight(record.weights, `${name}.weight_v`, fromMatrix(result.weightV)); // [r, out]
      } else {
        replaceWeight(record.weights, `${name}.weight`, fromMatrix(result.weight)); // [in, out]
      }
      ranks[name] = rank;
      ties[name] = result.tie;
    }
    record.drd.clear();
    const compression = record.compression;
    return { ...record, compression: { ...compression, ranks, ties: { ...compression.ties, drd: ties } } };
  }, { block: record.index }));
}
