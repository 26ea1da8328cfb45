/**
 * The GradOT emulator size from one knob (docs/METHOD.md §2 "The rank budget comes
 * from a target ratio of parameters"): `ratio` ρ = parameters of the
 * compressed middle blocks / parameters of the original middle blocks, split
 * into a DRD rank r for the attention projections and an SCP width m' for the
 * MLP of each block.
 *
 * Parameter accounting per block, as stored on disk: a DRD projection at rank
 * r costs `r (in + out)` when that is below `in · out`, else it is stored
 * dense (`in · out`, see `drd.ts`); its bias is kept. An SCP MLP at width m'
 * costs `m' · (Σ_inputs (in + bias) + out_of_output)` plus the output bias.
 * Everything else (norms: `otherParams`) is kept as it is.
 *
 * Defaults (the seeds report no emulator size, so these are choices):
 * - `ratio` 0.5: OT's OPT-1.3B emulator drops half of the middle blocks
 *   (Xiao et al. 2023, beyond the seeds), and docs/METHOD.md §5 compares methods at
 *   matched emulator size, so GradOT's default emulator is as large as the
 *   LayerDrop baselines' default one.
 * - `attnShare` (the fraction of the removed parameters taken from attention
 *   weights) defaults to attention's share of the compressible parameters,
 *   so attention and MLP each keep the fraction ρ of their weights: neutral
 *   between DRD and SCP until a λ/share sweep says otherwise.
 *
 * Rounding: r is chosen first (nearest to its share; among ranks of equal
 * cost the largest, so a projection that cannot shrink keeps full rank), then
 * m' absorbs the rounding; if m' hits its bounds, r is re-solved for the
 * rest. An MLP channel is `≈ 2d` parameters, so for real blocks the result is
 * within a few thousandths of ρ.
 *
 * `only` (the DRD-only / SCP-only ablation) keeps the other part whole and
 * takes every removed parameter from the compressed one; a ratio below what
 * the whole part plus rank 1 (width 1) keeps is refused, never silently
 * raised: on OPT-like blocks attention is a third of the weights, so DRD
 * alone cannot go below ρ ≈ 0.67.
 *
 * @module
 */
import type { LinearSpec } from "../model/types.ts";

/** What {@link planBudget} needs to know of one middle block. */
export interface BlockLayout {
  /** The block's linears (`Architecture.linears(cfg)`): `attn.*` roles get DRD, `mlp.*` get SCP. */
  linears: LinearSpec[];
  /** Parameters outside the linears (norm weights and biases), kept uncompressed. Default 0. */
  otherParams?: number;
}

/** The knob and its split (module doc: defaults and why). */
export interface BudgetOptions {
  /** ρ in (0, 1]: compressed middle params / original middle params. Default 0.5. */
  ratio?: number;
  /** Fraction in [0, 1] of the removed parameters taken from attention weights. */
  attnShare?: number;
  /**
   * Compress one part only (`--only`, docs/METHOD.md §2 "Ablations"): `drd`
   * keeps every MLP channel and takes all removed parameters from attention;
   * `scp` keeps attention whole and takes them all from the MLP.
   */
  only?: CompressedPart;
}

/** The parts `--only` can restrict GradOT to: attention (DRD) or the MLP (SCP). */
export const COMPRESSED_PARTS = ["drd", "scp"] as const;

/** One of {@link COMPRESSED_PARTS}. */
export type CompressedPart = typeof COMPRESSED_PARTS[number];

/** The compression settings of one block and what they cost. */
export interface BlockBudget {
  /** DRD rank r of the block's attention projections. */
  rank: number;
  /** r clamped to each projection's `min(in, out)`, by linear name (what `compressDrd` takes). */
  ranks: Map<string, number>;
  /** SCP width m' (kept intermediate channels). */
  width: number;
  /** Parameters of the compressed block. */
  params: number;
  /** Parameters of the original block. */
  originalParams: number;
}

interface BlockCosts {
  attention: LinearSpec[];
  maxRank: number;
  /** Parameters of one MLP channel over all MLP linears. */
  perChannel: number;
  channels: number;
  /** Biases of attention projections and of the MLP output, plus `otherParams`. */
  fixed: number;
  original: number;
}

function isAttention(l: LinearSpec): boolean {
  return l.role.startsWith("attn.");
}

function blockCosts(layout: BlockLayout, index: number): BlockCosts {
  const attention = layout.linears.filter(isAttention);
  const mlp = layout.linears.filter((l) => !isAttention(l));
  const producers = mlp.filter((l) => l.role !== "mlp.out");
  const consumers = mlp.filter((l) => l.role === "mlp.out");
  if (attention.length === 0 || producers.length === 0 || consumers.length !== 1) {
    throw new Error(
      `Budget block ${index} needs attention linears, MLP input linears and one mlp.out linear; got roles ${
        layout.linears.map((l) => l.role).join(", ")
      }`,
    );
  }
  const output = consumers[0];
  const channels = output.inFeatures;
  for (const l of producers) {
    if (l.outFeatures !== channels) {
      throw new Error(
        `Budget block ${index}: ${l.name} has ${l.outFeatures} outputs but ${output.name} has ${channels} inputs`,
      );
    }
  }
  const other = layout.otherParams ?? 0;
  if (!(Number.isInteger(other) && other >= 0)) {
    throw new Error(`Budget block ${index}: otherParams must be a non-negative integer, got ${other}`);
  }
  const bias = (l: LinearSpec) => (l.hasBias ? l.outFeatures : 0);
  const perChannel = producers.reduce((n, l) => n + l.inFeatures + (l.hasBias ? 1 : 0), 0) +
    output.outFeatures;
  const fixed = attention.reduce((n, l) => n + bias(l), 0) + bias(output) + other;
  const original = layout.linears.reduce((n, l) => n + l.inFeatures * l.outFeatures + bias(l), 0) +
    other;
  return {
    attention,
    maxRank: Math.max(...attention.map((l) => Math.min(l.inFeatures, l.outFeatures))),
    perChannel,
    channels,
    fixed,
    original,
  };
}

/** Stored weights of one DRD projection at rank r (dense when factors do not pay). */
function projectionCost(l: LinearSpec, rank: number): number {
  const r = Math.min(rank, l.inFeatures, l.outFeatures);
  return Math.min(r * (l.inFeatures + l.outFeatures), l.inFeatures * l.outFeatures);
}

function attentionCost(c: BlockCosts, rank: number): number {
  return c.attention.reduce((n, l) => n + projectionCost(l, rank), 0);
}

/** The rank whose attention cost is nearest `target`; the largest among equals. */
function nearestRank(c: BlockCosts, target: number): number {
  let best = 1;
  let bestGap = Infinity;
  for (let r = 1; r <= c.maxRank; r++) {
    const gap = Math.abs(attentionCost(c, r) - target);
    if (gap <= bestGap) {
      best = r;
      bestGap = gap;
    }
  }
  return best;
}

function nearestWidth(c: BlockCosts, target: number): number {
  return Math.min(c.channels, Math.max(1, Math.round(target / c.perChannel)));
}

/**
 * The budget of a block compressed in one part only (`only`): the other part
 * kept whole (full rank, every channel), the compressed part sized so the
 * block keeps `ratio` of its parameters. Throws, naming the smallest
 * reachable ratio, when even rank 1 or width 1 keeps more.
 */
function planOnePart(c: BlockCosts, index: number, ratio: number, only: CompressedPart): BlockBudget {
  const target = ratio * c.original;
  const mlpWhole = c.perChannel * c.channels;
  const attnWhole = attentionCost(c, c.maxRank);
  const minimum = only === "drd" ? c.fixed + mlpWhole + attentionCost(c, 1) : c.fixed + attnWhole + c.perChannel;
  if (target < minimum) {
    const kept = only === "drd" ? "every MLP channel and attention at rank 1" : "attention whole and one MLP channel";
    throw new Error(
      `Budget ratio ${ratio} (--ratio) is unreachable with --only ${only} for block ${index}: ${kept} already keep ${minimum} of ${c.original} parameters (the smallest ratio is ${
        (minimum / c.original).toFixed(4)
      })`,
    );
  }
  const rank = only === "drd" ? nearestRank(c, target - c.fixed - mlpWhole) : c.maxRank;
  const width = only === "scp" ? nearestWidth(c, target - c.fixed - attnWhole) : c.channels;
  const ranks = new Map(c.attention.map((l) => [l.name, Math.min(rank, l.inFeatures, l.outFeatures)]));
  const params = c.fixed + attentionCost(c, rank) + c.perChannel * width;
  return { rank, ranks, width, params, originalParams: c.original };
}

/**
 * DRD rank and SCP width of each middle block so that its parameters are
 * `ratio` of the original (module doc: accounting, defaults, rounding).
 * Throws when `ratio` is below what rank 1 and width 1 already cost.
 */
export function planBudget(blocks: BlockLayout[], options: BudgetOptions = {}): BlockBudget[] {
  const ratio = options.ratio ?? 0.5;
  if (!(ratio > 0 && ratio <= 1)) throw new Error(`Budget ratio must be in (0, 1], got ${ratio}`);
  const share = options.attnShare;
  if (share !== undefined && !(share >= 0 && share <= 1)) {
    throw new Error(`Budget attnShare must be in [0, 1], got ${share}`);
  }
  if (share !== undefined && options.only !== undefined) {
    throw new Error(`Budget attnShare (--attn-share) cannot be combined with only (--only ${options.only}): the part compressed takes all removed parameters`);
  }
  return blocks.map((layout, index) => {
    const c = blockCosts(layout, index);
    const target = ratio * c.original;
    if (options.only) return planOnePart(c, index, ratio, options.only);
    const minimum = c.fixed + attentionCost(c, 1) + c.perChannel;
    if (target < minimum) {
      throw new Error(
        `Budget ratio ${ratio} is unreachable for block ${index}: rank 1 and width 1 already keep ${minimum} of ${c.original} parameters (ratio ${
          (minimum / c.original).toFixed(4)
        })`,
      );
    }
    const attnWeights = attentionCost(c, c.maxRank);
    const mlpWeights = c.perChannel * c.channels;
    const removed = c.original - target;
    const attnShare = share ?? attnWeights / (attnWeights + mlpWeights);
    let rank = nearestRank(c, attnWeights - attnShare * removed);
    const width = nearestWidth(c, target - c.fixed - attentionCost(c, rank));
    const mlpCost = c.perChannel * width;
    if (width === 1 || width === c.channels) rank = nearestRank(c, target - c.fixed - mlpCost);
    const params = c.fixed + attentionCost(c, rank) + mlpCost;
    const ranks = new Map(
      c.attention.map((l) => [l.name, Math.min(rank, l.inFeatures, l.outFeatures)]),
    );
    return { rank, ranks, width, params, originalParams: c.original };
  });
}
