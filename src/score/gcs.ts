/**
 * Closed-form Gradient-preserving Compression Scores (METHOD.md §2).
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
 * The doc comment of each function maps METHOD.md's out×in symbols to them.
 *
 * @module
 */
import { matmul } from "../linalg/gemm.ts";
import { checkShape, columnAbsSums, type Matrix } from "../linalg/matrix.ts";
import type { SvdResult } from "../linalg/svd.ts";
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
 * An MLP whose intermediate channels SCP scores and prunes (METHOD.md §2 SCP).
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

/** `‖M[i, :]‖₁` for the first `rows` rows: `[rows]`. */
function rowAbsSums(m: Matrix, rows = m.rows): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < m.cols; c++) acc += Math.abs(m.data[r * m.cols + c]);
    out[r] = acc;
  }
  return out;
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
 * GCS of dropping each SVD component of an attention projection (METHOD.md
 * §2 DRD):
 *
 *     GCS_i = s_i ‖G u_i‖₁ ‖A v_i‖₁ + λ · s_i · u_iᵀ g v_i      (δ_i = −s_i u_i v_iᵀ)
 *
 * `svd` is the thin SVD of the KERNEL-layout weight `Wk = U diag(s) Vt`
 * (`U` `[in, k]`, `Vt` `[k, out]`), so METHOD.md's output-side `u_i` is row i
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
  expectShape(stats.g, inF, out, "DRD gradient g");

  const aNorm = columnAbsSums(matmul(stats.A.dense(), svd.u)); // ‖A v_i‖₁ from [in, k]
  const gNorm = rowAbsSums(matmul(svd.vt, stats.G.dense(), false, true)); // ‖G u_i‖₁ from [k, out]
  const inner = rowDots(matmul(svd.u, stats.g, true, false), svd.vt, k); // u_iᵀ g v_i from [k, out]
  const scores = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    const s = svd.s[i];
    scores[i] = s * aNorm[i] * gNorm[i] + lambda * s * inner[i];
  }
  return scores;
}

/** `[Wk; b]` `[in+1, out]` when `augmented`, else `Wk` itself. */
function augmentedWeight(linear: MlpLinear, augmented: boolean, label: string): Matrix {
  if (!augmented) return linear.weight;
  const { rows, cols, data } = linear.weight;
  if (!linear.bias) {
    throw new Error(`GCS ${label} has bias-augmented statistics but no bias`);
  }
  if (linear.bias.length !== cols) {
    throw new Error(`GCS ${label} bias has ${linear.bias.length} values, expected ${cols}`);
  }
  const w = new Float32Array((rows + 1) * cols);
  w.set(data);
  w.set(linear.bias, rows * cols);
  return { rows: rows + 1, cols, data: w };
}

/**
 * GCS of removing each intermediate channel j of an MLP (METHOD.md §2 SCP):
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
 * `[m]` scores in channel order.
 */
export function scpScores(mlp: ChannelMlp, stats: ChannelMlpStats, lambda: number): Float32Array {
  checkLambda(lambda);
  if (mlp.inputs.length === 0) throw new Error("GCS SCP needs at least one input linear");
  if (stats.inputs.length !== mlp.inputs.length) {
    throw new Error(
      `GCS SCP has ${mlp.inputs.length} input linears but ${stats.inputs.length} input statistics`,
    );
  }
  const m = mlp.output.weight.rows;
  const d = mlp.output.weight.cols;
  const total = new Float64Array(m);

  mlp.inputs.forEach((linear, index) => {
    const label = `SCP input ${index}`;
    const st = stats.inputs[index];
    const inF = linear.weight.rows;
    expectShape(linear.weight, inF, m, `${label} weight`);
    const augmented = st.A.size === inF + 1;
    if (linear.bias && !augmented) {
      throw new Error(
        `GCS ${label} has a bias but its factor A is [${st.A.size}, ${st.A.size}]: accumulate it with bias: true ([${inF + 1}, ${inF + 1}])`,
      );
    }
    const w = augmentedWeight(linear, augmented, label); // [in', m]
    expectFactor(st.A, w.rows, `${label} factor A`);
    expectFactor(st.G, m, `${label} factor G`);
    expectShape(st.g, w.rows, m, `${label} gradient g`);
    const gCol = st.G.columnAbsSums(); // ‖G₁[:,j]‖₁
    const aW = columnAbsSums(matmul(st.A.dense(), w)); // ‖A₁ w₁ⱼ‖₁ from [in', m]
    const inner = columnDots(st.g, w); // g₁[j,:]·w₁ⱼ
    for (let j = 0; j < m; j++) total[j] += gCol[j] * aW[j] + lambda * inner[j];
  });

  const st = stats.output;
  const w2 = mlp.output.weight; // [m, d]
  expectShape(w2, m, d, "SCP output weight");
  const augmented = st.A.size === m + 1;
  if (augmented && !mlp.output.bias) {
    throw new Error("GCS SCP output has bias-augmented statistics but no bias");
  }
  const mAug = m + (augmented ? 1 : 0);
  expectFactor(st.A, mAug, "SCP output factor A");
  expectFactor(st.G, d, "SCP output factor G");
  expectShape(st.g, mAug, d, "SCP output gradient g");
  const gW = rowAbsSums(matmul(w2, st.G.dense(), false, true)); // ‖G₂ w₂ⱼ‖₁ from [m, d]
  const aCol = st.A.columnAbsSums(); // ‖A₂[:,j]‖₁, [m'] (first m used)
  const inner = rowDots(st.g, w2, m); // g₂[:,j]·w₂ⱼ
  const scores = new Float32Array(m);
  for (let j = 0; j < m; j++) {
    scores[j] = total[j] + gW[j] * aCol[j] + lambda * inner[j];
  }
  return scores;
}
