/**
 * Closed-form Gradient-preserving Compression Scores (docs/METHOD.md §2).
 *
 *     GCS(δ) = ‖G δ A‖₁ − λ ⟨g, δ⟩        (H vec δ ≈ vec(G δ A), KFAC)
 *
 * Every candidate perturbation here is rank one, `δ = −c p qᵀ`, so
 * `‖G δ A‖₁ = |c| ‖G p‖₁ ‖A q‖₁` and `⟨g, δ⟩ = −c pᵀ g q`: the scores of all
 * candidates of a matrix come from a few matMuls, never from forming `G δ A`.
 * A compressor keeps the candidates of LARGEST score (it applies the
 * perturbations of smallest GCS).
 *
 * Layout: weights, gradients and SVD factors are in kernel layout
 * (`Wk = Wᵀ`, `[in, out]`, `src/model/types.ts`); statistics come from
 * `src/stats/kfac.ts` (`A` over inputs, `G` over outputs, `g = ∂ℓ/∂Wk`).
 * The doc comment of each function maps docs/METHOD.md's out×in symbols to them.
 * SCP's first-order terms of a ReLU MLP come from its channel products
 * instead of `g` (`src/stats/channel_products.ts`, docs/GRADOT.md "SCP's
 * first-order terms").
 *
 * @module
 */
import { reducedProduct } from "../linalg/gemm.ts";
import { checkShape, columnAbsSums, type Matrix, rowAbsSums } from "../linalg/matrix.ts";
import type { SvdResult } from "../linalg/svd.ts";
import type { ChannelProducts } from "../stats/channel_products.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import type { SymmetricFactor } from "../stats/symmetric_factor.ts";

/** A linear of an MLP as SCP sees it: kernel-layout weight and optional bias. */
export interface MlpLinear {
  /** Kernel layout `[in, out]`. */
  weight: Matrix;
  /** `[out]`, when the linear has one. */
  bias?: Float32Array;
}

/**
 * An MLP whose intermediate channels SCP scores and prunes (docs/METHOD.md §2 SCP).
 * `inputs` are the linears producing the m channels (`[d, m]` each: fc1, or
 * gate and up for SwiGLU); `output` consumes them (`[m, d]`: fc2 or down).
 */
export interface ChannelMlp {
  inputs: MlpLinear[];
  output: MlpLinear;
}

/** KFAC statistics matching a {@link ChannelMlp}, linear by linear. */
export interface ChannelMlpStats {
  inputs: KfacFactors[];
  output: KfacFactors;
  /**
   * A ReLU MLP's channel products `[m]`: both first-order terms come from
   * them, and the linears need no `g` (docs/GRADOT.md "SCP's first-order terms").
   */
  channels?: ChannelProducts;
}

function expectShape(m: Matrix, rows: number, cols: number, label: string): void {
  checkShape(m, `GCS ${label}`);
  if (m.rows !== rows || m.cols !== cols) {
    throw new Error(`GCS ${label} is [${m.rows}, ${m.cols}], expected [${rows}, ${cols}]`);
  }
}

function expectFactor(f: SymmetricFactor, size: number, label: string): void {
  if (f.size !== size) throw new Error(`GCS ${label} is [${f.size}, ${f.size}], expected [${size}, ${size}]`);
}

function checkLambda(lambda: number): void {
  if (!Number.isFinite(lambda)) throw new Error(`GCS lambda must be finite, got ${lambda}`);
}

/** The statistics' gradient `g`, checked to be `[rows, cols]`; throws naming the linear when it has none. */
function gradientOf(st: KfacFactors, rows: number, cols: number, label: string): Matrix {
  if (!st.g) {
    throw new Error(`GCS ${label} has no gradient g (its KFAC statistics were summed without one, as a ReLU MLP's are): pass the MLP's channel products`);
  }
  expectShape(st.g, rows, cols, `${label} gradient g`);
  return st.g;
}

/** A ReLU MLP's channel products as one linear's first-order terms, checked against its `m` channels and tokens: `[m]`. */
function channelTerms(channels: ChannelProducts, m: number, st: KfacFactors, label: string): Float64Array {
  if (channels.mean.length !== m) throw new Error(`GCS ${label} has ${m} channels but the channel products ${channels.mean.length}`);
  if (channels.tokens !== st.tokens) throw new Error(`GCS ${label} statistics saw ${st.tokens} tokens but the channel products ${channels.tokens}`);
  return channels.mean;
}

/** `Σ_r a[r, j] b[r, j]` for every column j (same shapes): `[cols]`. */
function columnDots(a: Matrix, b: Matrix): Float64Array {
  const out = new Float64Array(a.cols);
  for (let r = 0; r < a.rows; r++) {
    const row = r * a.cols;
    for (let c = 0; c < a.cols; c++) out[c] += a.data[row + c] * b.data[row + c];
  }
  return out;
}

/** `Σ_c a[i, c] b[i, c]` for the first `rows` rows (same widths): `[rows]`. */
function rowDots(a: Matrix, b: Matrix, rows: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < a.cols; c++) acc += a.data[r * a.cols + c] * b.data[r * b.cols + c];
    out[r] = acc;
  }
  return out;
}

/**
 * GCS of dropping each SVD component of an attention projection (docs/METHOD.md
 * §2 DRD):
 *
 *     GCS_i = s_i ‖G u_i‖₁ ‖A v_i‖₁ + λ · s_i · u_iᵀ g v_i      (δ_i = −s_i u_i v_iᵀ)
 *
 * `svd` is the thin SVD of the KERNEL-layout weight `Wk = U diag(s) Vt`
 * (`U` `[in, k]`, `Vt` `[k, out]`), so docs/METHOD.md's output-side `u_i` is row i
 * of `svd.vt` and its input-side `v_i` is column i of `svd.u`; `stats` must be
 * unaugmented (`A` `[in, in]`, `G` `[out, out]`, `g` `[in, out]`): DRD leaves
 * the bias alone. Returns `[k]` scores in component order. Invariant under
 * the sign ambiguity of singular vector pairs.
 */
export function drdScores(svd: SvdResult, stats: KfacFactors, lambda: number): Float32Array {
  checkLambda(lambda);
  const inF = svd.u.rows;
  const k = svd.s.length;
  const out = svd.vt.cols;
  expectShape(svd.u, inF, k, "DRD factor U");
  expectShape(svd.vt, k, out, "DRD factor Vt");
  expectFactor(stats.A, inF, "DRD factor A (use unaugmented statistics for attention)");
  expectFactor(stats.G, out, "DRD factor G");
  const g = gradientOf(stats, inF, out, "DRD");

  const aNorm = reducedProduct(stats.A.dense(), svd.u, false, false, columnAbsSums); // ‖A v_i‖₁ from [in, k]
  const gNorm = reducedProduct(svd.vt, stats.G.dense(), false, true, rowAbsSums); // ‖G u_i‖₁ from [k, out]
  const inner = reducedProduct(svd.u, g, true, false, (ug) => rowDots(ug, svd.vt, k)); // u_iᵀ g v_i from [k, out]
  const scores = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    const s = svd.s[i];
    scores[i] = s * aNorm[i] * gNorm[i] + lambda * s * inner[i];
  }
  return scores;
}

/** Columns (or rows) of a weight per product tile in SCP scoring: the products never exceed `[side, 256]`. */
const SCP_TILE = 256;

/**
 * `‖A w̃ⱼ‖₁` for every column j of the producer weight, with `w̃ⱼ` column j of
 * `[Wk; b]` when `augmented` (`A` then `[in+1, in+1]`), else of `Wk`: `[m]`.
 * Formed {@link SCP_TILE} columns at a time, so no `[in', m]` product or
 * augmented copy of the weight is held.
 */
function producerActivationNorms(a: Matrix, linear: MlpLinear, augmented: boolean): Float64Array {
  const { rows: inF, cols: m, data } = linear.weight;
  const rows = inF + (augmented ? 1 : 0);
  const out = new Float64Array(m);
  const buffer = new Float32Array(rows * Math.min(m, SCP_TILE)); // every tile in turn
  for (let from = 0; from < m; from += SCP_TILE) {
    const width = Math.min(m, from + SCP_TILE) - from;
    const tile = buffer.subarray(0, rows * width); // [in', width]
    for (let r = 0; r < inF; r++) tile.set(data.subarray(r * m + from, r * m + from + width), r * width);
    if (augmented) tile.set((linear.bias as Float32Array).subarray(from, from + width), inF * width);
    out.set(reducedProduct(a, { rows, cols: width, data: tile }, false, false, columnAbsSums), from); // from [in', width]
  }
  return out;
}

/**
 * `‖G wⱼ‖₁` for every row j of the consumer weight `[m, d]` (`G` `[d, d]`):
 * `[m]`, formed {@link SCP_TILE} rows at a time (views, no copy).
 */
function consumerGradientNorms(g: Matrix, weight: Matrix): Float64Array {
  const { rows: m, cols: d, data } = weight;
  const out = new Float64Array(m);
  for (let from = 0; from < m; from += SCP_TILE) {
    const to = Math.min(m, from + SCP_TILE);
    const tile = { rows: to - from, cols: d, data: data.subarray(from * d, to * d) }; // [rows, d]
    out.set(reducedProduct(tile, g, false, true, rowAbsSums), from); // from [rows, d]
  }
  return out;
}

/** Sum over the producer weight's rows `Σ_i g[i, j] w̃[i, j]` (bias row from `linear.bias`), `[m]`. */
function producerGradientDots(g: Matrix, linear: MlpLinear, augmented: boolean): Float64Array {
  const { rows: inF, cols: m } = linear.weight;
  const out = columnDots({ rows: inF, cols: m, data: g.data.subarray(0, inF * m) }, linear.weight);
  if (augmented) {
    const bias = linear.bias as Float32Array;
    for (let j = 0; j < m; j++) out[j] += g.data[inF * m + j] * bias[j];
  }
  return out;
}
/**
 * GCS of removing each intermediate channel j of an MLP (docs/METHOD.md §2 SCP):
 *
 *     GCS_j = Σ_inputs ( ‖G₁[:,j]‖₁ ‖A₁ w₁ⱼ‖₁ + λ g₁[j,:]·w₁ⱼ )
 *                    +   ‖G₂ w₂ⱼ‖₁ ‖A₂[:,j]‖₁ + λ g₂[:,j]·w₂ⱼ
 *
 * i.e. `‖Hδ‖₁ − λ⟨g,δ⟩` with `δ` zeroing row j of each input `W₁` (out×in
 * view) and column j of `W₂`, and KFAC's block-diagonal H (one block per
 * linear, so the L1 norms add). For SwiGLU the gate and up projections are
 * both `inputs` ("add the gate's term likewise").
 *
 * Kernel layout: channel j is column j of each input weight `[d, m]` and row j
 * of the output weight `[m, d]`. Bias: an input linear with a bias must come
 * with bias-augmented statistics (`accumulateKfac(..., { bias: true })`:
 * `A₁` `[d+1, d+1]`, `g₁` `[d+1, m]`), and `w₁ⱼ` is column j of `[Wk; b]`, so
 * zeroing `b₁[j]` is part of `δ`. The output linear's bias is never
 * perturbed; its statistics may be augmented or not (with augmentation
 * `‖A₂[:,j]‖₁` also counts the shift of the fc2 bias gradient). Returns
 * `[m]` scores in channel order. With `stats.channels` (a ReLU MLP) both
 * first-order terms are the channel products `c_j` (`λ (c_j + c_j)`), and
 * the linears' `g` is not read.
 */
export function scpScores(mlp: ChannelMlp, stats: ChannelMlpStats, lambda: number): Float32Array {
  if (mlp.inputs.length === 0) throw new Error("GCS SCP needs at least one input linear");
  if (stats.inputs.length !== mlp.inputs.length) {
    throw new Error(
      `GCS SCP has ${mlp.inputs.length} input linears but ${stats.inputs.length} input statistics`,
    );
  }
  if (stats.channels && mlp.inputs.length !== 1) {
    throw new Error(
      `GCS SCP was given channel products for an MLP with ${mlp.inputs.length} input linears: they stand for the first-order terms of a ReLU MLP's one input linear only (docs/GRADOT.md "SCP's first-order terms")`,
    );
  }
  const total = scpConsumerTerms(mlp.output, stats.output, lambda, "SCP output", stats.channels);
  mlp.inputs.forEach((linear, index) => {
    const label = `SCP input ${index}`;
    addChannelTerms(total, scpProducerTerms(linear, stats.inputs[index], lambda, label, stats.channels), label);
  });
  return Float32Array.from(total);
}

/** `total += terms` channel by channel, checking both cover the same m channels. */
export function addChannelTerms(total: Float64Array, terms: Float64Array, label: string): void {
  if (terms.length !== total.length) {
    throw new Error(`GCS ${label} has ${terms.length} channels but the MLP has ${total.length}`);
  }
  for (let j = 0; j < total.length; j++) total[j] += terms[j];
}

/**
 * One channel producer's terms of {@link scpScores} (fc1, gate or up),
 * `‖G₁[:,j]‖₁ ‖A₁ w₁ⱼ‖₁ + λ g₁[j,:]·w₁ⱼ` for every channel j: `[m]`, in
 * float64. Scoring the MLP linear by linear lets a caller drop each linear's
 * statistics and weight copy before reading the next (`scoreGcs`).
 * `label` names the linear in errors. The first-order term `g₁[j,:]·w₁ⱼ` is
 * `mean_t γ₁,tj y₁,tj` (`y₁` the linear's output, bias included) for any
 * linear; with `channels` (a ReLU MLP's fc1) it is taken from them, since
 * ReLU passes no gradient where `y₁ ≤ 0` and `y₁ = h` elsewhere
 * (`src/stats/channel_products.ts`); else from `st.g`.
 */
export function scpProducerTerms(linear: MlpLinear, st: KfacFactors, lambda: number, label = "SCP input", channels?: ChannelProducts): Float64Array {
  checkLambda(lambda);
  const { rows: inF, cols: m } = linear.weight;
  expectShape(linear.weight, inF, m, `${label} weight`);
  const augmented = st.A.size === inF + 1;
  if (linear.bias && !augmented) {
    throw new Error(
      `GCS ${label} has a bias but its factor A is [${st.A.size}, ${st.A.size}]: accumulate it with bias: true ([${inF + 1}, ${inF + 1}])`,
    );
  }
  if (augmented && !linear.bias) throw new Error(`GCS ${label} has bias-augmented statistics but no bias`);
  if (linear.bias && linear.bias.length !== m) {
    throw new Error(`GCS ${label} bias has ${linear.bias.length} values, expected ${m}`);
  }
  const rows = inF + (augmented ? 1 : 0);
  expectFactor(st.A, rows, `${label} factor A`);
  expectFactor(st.G, m, `${label} factor G`);
  const inner = channels
    ? channelTerms(channels, m, st, label) // g₁[j,:]·w₁ⱼ = mean_t γ₁,tj h_tj
    : producerGradientDots(gradientOf(st, rows, m, label), linear, augmented); // g₁[j,:]·w₁ⱼ
  const gCol = st.G.columnAbsSums(); // ‖G₁[:,j]‖₁
  const aW = producerActivationNorms(st.A.dense(), linear, augmented); // ‖A₁ w₁ⱼ‖₁
  for (let j = 0; j < m; j++) aW[j] = gCol[j] * aW[j] + lambda * inner[j];
  return aW;
}

/**
 * The channel consumer's terms of {@link scpScores} (fc2 or down, weight
 * `[m, d]`), `‖G₂ w₂ⱼ‖₁ ‖A₂[:,j]‖₁ + λ g₂[:,j]·w₂ⱼ` for every channel j:
 * `[m]`, in float64. Its bias is never perturbed; its statistics may be
 * bias-augmented or not (module doc of {@link scpScores}). The first-order
 * term `g₂[:,j]·w₂ⱼ` is `mean_t h_tj ∂ℓ/∂h_tj` (`h` the linear's input) for
 * any linear; with `channels` (a ReLU MLP's fc2) it is taken from them,
 * since `∂ℓ/∂h = γ₁` where `h > 0` and `h = 0` elsewhere
 * (`src/stats/channel_products.ts`); else from `st.g`.
 */
export function scpConsumerTerms(linear: MlpLinear, st: KfacFactors, lambda: number, label = "SCP output", channels?: ChannelProducts): Float64Array {
  checkLambda(lambda);
  const w2 = linear.weight; // [m, d]
  const { rows: m, cols: d } = w2;
  expectShape(w2, m, d, `${label} weight`);
  const augmented = st.A.size === m + 1;
  if (augmented && !linear.bias) throw new Error(`GCS ${label} has bias-augmented statistics but no bias`);
  const mAug = m + (augmented ? 1 : 0);
  expectFactor(st.A, mAug, `${label} factor A`);
  expectFactor(st.G, d, `${label} factor G`);
  const inner = channels
    ? channelTerms(channels, m, st, label) // g₂[:,j]·w₂ⱼ = mean_t h_tj γ₁,tj
    : rowDots(gradientOf(st, mAug, d, label), w2, m); // g₂[:,j]·w₂ⱼ
  const gW = consumerGradientNorms(st.G.dense(), w2); // ‖G₂ w₂ⱼ‖₁
  const aCol = st.A.columnAbsSums(); // ‖A₂[:,j]‖₁, [m'] (first m used)
  for (let j = 0; j < m; j++) gW[j] = gW[j] * aCol[j] + lambda * inner[j];
  return gW;
}
