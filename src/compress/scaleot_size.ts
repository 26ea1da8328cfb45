/**
 * ScaleOT's matched-size rule (docs/METHOD.md §3 "ScaleOT"): the middle of
 * a ScaleOT emulator with `K` of its `M` blocks replaced holds
 *
 *     P(K) = (M − K) · P_kept + K · P_harm
 *
 * parameters, `P_kept` a kept block's after Selective Rank Compression at β
 * and `P_harm` a harmonizer's. Given only a ratio ρ, β keeps its default and
 * `K` is the count in `0..M−1` whose `P(K)` is nearest `ρ · M · P_block`
 * (the smaller `K` on a tie), so the emulator matches GradOT and the
 * baselines in size (docs/METHOD.md §5).
 *
 * @module
 */
import { truncatedParams, reducedRank } from "./selective_rank.ts";
import type { Architecture, ModelConfig } from "../model/types.ts";

/** The parameter counts the rule reads, per block. */
export interface ScaleotBlockSizes {
  /** An original middle block's parameters. */
  block: number;
  /** A kept middle block's after Selective Rank Compression. */
  kept: number;
  /** A harmonizer's. */
  harmonizer: number;
}

/** The parameters of one uncompressed block of `arch` (every middle block has this layout). */
export function blockParams(arch: Architecture, cfg: ModelConfig): number {
  return [...arch.blockShapes(cfg).values()].reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
}

/** A middle block's parameter counts for `arch` at rank reduction `beta`, with harmonizers of `harmonizerParams` each. */
export function scaleotBlockSizes(arch: Architecture, cfg: ModelConfig, beta: number, harmonizerParams: number): ScaleotBlockSizes {
  const block = blockParams(arch, cfg);
  let saved = 0;
  for (const spec of arch.linears(cfg)) {
    if (!spec.role.startsWith("attn.")) continue;
    const { inFeatures: i, outFeatures: o } = spec;
    saved += i * o - truncatedParams(i, o, reducedRank(Math.min(i, o), beta));
  }
  return { block, kept: block - saved, harmonizer: harmonizerParams };
}

/** `P(K)` of the module doc: the middle parameters with `replaced` of `middle` blocks replaced. */
export function scaleotMiddleParams(middle: number, replaced: number, sizes: ScaleotBlockSizes): number {
  return (middle - replaced) * sizes.kept + replaced * sizes.harmonizer;
}

/**
 * The number of the `middle` blocks to replace so the middle holds about
 * `ratio` of its original parameters (module doc).
 *
 * @throws RangeError when `ratio` is not in (0, 1]
 */
export function replacedForRatio(middle: number, ratio: number, sizes: ScaleotBlockSizes): number {
  if (!(Number.isFinite(ratio) && ratio > 0 && ratio <= 1)) {
    throw new RangeError(`ScaleOT ratio must be in (0, 1] (emulator middle params / original middle params), got ${ratio}`);
  }
  const target = ratio * middle * sizes.block;
  let best = 0;
  for (let k = 1; k < middle; k++) {
    if (Math.abs(scaleotMiddleParams(middle, k, sizes) - target) < Math.abs(scaleotMiddleParams(middle, best, sizes) - target)) best = k;
  }
  return best;
}

/**
 * The number of the `middle` blocks replaced at replace fraction `alpha`:
 * `round(α · M)`, at most `M − 1` (an emulator keeps at least one original block).
 *
 * @throws RangeError when `alpha` is not in [0, 1)
 */
export function replacedForFraction(middle: number, alpha: number): number {
  if (!(Number.isFinite(alpha) && alpha >= 0 && alpha < 1)) {
    throw new RangeError(`ScaleOT replace fraction must be in [0, 1) (the fraction of middle blocks replaced by harmonizers), got ${alpha}`);
  }
  return Math.min(middle - 1, Math.round(alpha * middle));
}
