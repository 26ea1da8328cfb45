/**
 * The GradOT budget of a model's middle blocks from one knob (docs/METHOD.md §2,
 * `src/compress/budget.ts`): shared by `compressDrd` and `compressScp` so both
 * read the same plan.
 *
 * @module
 */
import { type BlockBudget, type BudgetOptions, planBudget } from "./budget.ts";
import type { ModelHandle } from "../records/records.ts";

/** The budget of one middle block of `model` (all middle blocks share a layout). */
export function middleBudget(model: ModelHandle, options: BudgetOptions): BlockBudget {
  const { arch, cfg } = model;
  const linears = arch.linears(cfg);
  const linearWeights = new Set(linears.flatMap((l) => [`${l.name}.weight`, `${l.name}.bias`]));
  let otherParams = 0;
  for (const [name, shape] of arch.blockShapes(cfg)) {
    if (!linearWeights.has(name)) otherParams += shape.reduce((a, b) => a * b, 1);
  }
  return planBudget([{ linears, otherParams }], options)[0];
}
