/**
 * Which calibration worker sums which linears' KFAC statistics in a
 * data-parallel GradOT build (docs/DISTRIBUTED.md "How a GradOT build uses
 * the cores"): each linear has one owner, which adds every chunk of it in
 * chunk order, so its factors are the bytes one thread sums. Linears that
 * read one input (q, k and v) share their `A` sum and go to one owner.
 *
 * @module
 */
import type { LinearSpec } from "../model/types.ts";
import { readsReluOutputs, rowHeldFactors, sumsGradient } from "../operators/accumulate_kfac.ts";
import { staysRowHeld } from "../stats/kfac.ts";

/**
 * A linear's KFAC work per token over a block of `tokens` tokens: its
 * gradient sum `x γᵀ` (in·out; none for a ReLU MLP's linears,
 * `sumsGradient`: the building thread sums their channel products), its `G`
 * sum (out² / 2: the upper triangle) and, unless `sharesA` (its input's
 * owner sums it), its `A` sum (in² / 2).
 * A row-held factor (docs/GRADOT.md "The pipeline") costs nothing per token
 * while it stays so (`staysRowHeld`); past that it turns dense, its rows
 * summed then, so it costs as a dense one (OPT-125M's fc1 `G`, 3072 wide, on
 * 2,032 tokens: most of the block's KFAC work). A ReLU MLP's fc2 `A` is
 * summed as its column norms (`readsReluOutputs`): two passes over the input.
 */
function kfacWork(spec: LinearSpec, sharesA: boolean, tokens: number): number {
  const held = rowHeldFactors(spec);
  const sum = (side: number, rowHeld: boolean) => (rowHeld && staysRowHeld(tokens, side) ? 0 : (side * side) / 2);
  const inputSum = readsReluOutputs(spec) ? 2 * spec.inFeatures : sum(spec.inFeatures, held.A);
  return (sumsGradient(spec) ? spec.inFeatures * spec.outFeatures : 0) + sum(spec.outFeatures, held.G) + (sharesA ? 0 : inputSum);
}

/**
 * The owner (a worker index below `workers`) of each linear of a block,
 * by name: the groups of linears sharing an input (`sharesInputWith`, the
 * first reader first) go, the costliest group first, to the worker with the
 * least work so far (the lower index on a tie), so the workers' KFAC work is
 * about even; then the slots are numbered by their work, the most first, so
 * the last slot, the building thread in a calibration pool, which has its
 * own work besides, gets the least. Depends only on the specs, `workers`
 * and `tokens`; the factors' bytes do not depend on their owners.
 *
 * @param groups each linear's spec and the earlier linear whose input it reads, if any
 * @param tokens the tokens of a block's KFAC sums, all chunks together (N·(T-1))
 */
export function kfacOwners(
  groups: ReadonlyArray<{ spec: LinearSpec; sharesInputWith?: string }>,
  workers: number,
  tokens: number,
): Map<string, number> {
  const byOwner = new Map<string, { names: string[]; work: number }>();
  for (const { spec, sharesInputWith } of groups) {
    const key = sharesInputWith ?? spec.name;
    const group = byOwner.get(key) ?? { names: [], work: 0 };
    group.names.push(spec.name);
    group.work += kfacWork(spec, sharesInputWith !== undefined, tokens);
    byOwner.set(key, group);
  }
  const load = new Array<number>(workers).fill(0);
  const slotOf = new Map<string, number>();
  const sorted = [...byOwner.values()].sort((a, b) => b.work - a.work); // stable: ties keep the block's order
  for (const group of sorted) {
    const k = load.indexOf(Math.min(...load));
    load[k] += group.work;
    for (const name of group.names) slotOf.set(name, k);
  }
  const byWork = load.map((work, k) => ({ work, k })).sort((a, b) => b.work - a.work); // stable
  const rank = new Map(byWork.map(({ k }, r) => [k, r]));
  return new Map([...slotOf].map(([name, k]) => [name, rank.get(k)!]));
}
