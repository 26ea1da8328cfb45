/**
 * Streaming KFAC statistics of one linear map (METHOD.md §2 "Hessian by KFAC").
 *
 * Layout: inputs and weights are in *kernel layout* (`src/model/types.ts`):
 * `y = x Wk + b` with `Wk = Wᵀ` of shape `[in, out]`. The gradient `g` is
 * therefore returned as `∂ℓ/∂Wk` `[in, out]`, the transpose of METHOD.md's
 * out×in `∂ℓ/∂W`.
 *
 * Scaling convention. Calibration treats every token position `t` of the N
 * calibration tokens as one example; `γ_t` is the gradient of the *summed*
 * token loss `Σ_s ℓ_s` w.r.t. the linear's output `y_t` (the per-example
 * gradient; in a causal LM it collects the losses of all later positions).
 * The statistics describe the MEAN loss `ℓ = (1/N) Σ_s ℓ_s`:
 *
 *     A = (1/N) Σ_t x_t x_tᵀ     G = (1/N) Σ_t γ_t γ_tᵀ     g = ∂ℓ/∂Wk = (1/N) Σ_t x_t γ_tᵀ
 *
 * so `A ⊗ G ≈ (1/N) Σ_t (x_t x_tᵀ) ⊗ (γ_t γ_tᵀ)`, the empirical Fisher (the
 * Gauss-Newton stand-in for `∂²ℓ/∂W²`) of the mean loss, and `H vec(δ) ≈
 * vec(G δ A)` and `g` are the second- and first-order Taylor terms of the
 * same `ℓ`. GCS (`‖Hδ‖₁ − λ⟨g,δ⟩`) is then independent of N, so `λ` means the
 * same for any calibration size. In terms of the mean-loss gradient
 * `γ̄_t = ∂ℓ/∂y_t = γ_t / N` this is `G = N Σ_t γ̄_t γ̄_tᵀ`, not `Σ_t γ̄_t γ̄_tᵀ`
 * (which would shrink H by N). A backward pass over a loss averaged over `n`
 * tokens yields `γ_t / n`: pass `gradScale: n` to undo that.
 *
 * Bias: with `bias: true` the inputs are augmented with a constant 1
 * (`x̃ = [x, 1]`), so `A` is `(in+1)×(in+1)` and `g` is `[in+1, out]`: the
 * statistics of the augmented kernel weight `[Wk; b]` (bias as the last row),
 * which SCP needs because removing a channel also zeroes its fc1 bias.
 *
 * Sums are kept in float64 (the per-chunk products come from the float32
 * OpenBLAS gemm), so long calibration runs do not lose the small terms; the
 * price is memory: 8 bytes per entry of `A`, `G` and `g` (OPT-1.3B's fc1 `G`,
 * 8192², is 512 MiB while accumulating, 256 MiB once finalized).
 * KFAC sums are additive: {@link mergeKfac} joins data-parallel workers.
 *
 * @module
 */
import { gramTransposed, matmul } from "../linalg/gemm.ts";
import { checkShape, type Matrix } from "../linalg/matrix.ts";

/** Options of {@link accumulateKfac}: `gradScale` is per chunk, `bias` is fixed by the first chunk. */
export interface KfacOptions {
  /**
   * Factor turning this chunk's `gamma` into gradients of the summed token
   * loss: the number of tokens the differentiated loss was averaged over
   * (default 1).
   */
  gradScale?: number;
  /** Augment inputs with a constant 1 so the bias is row `in` of the weight. */
  bias?: boolean;
}

/**
 * Running float64 sums for one linear. Treat as opaque; it is an accumulator
 * owned by the caller, updated in place by {@link accumulateKfac}.
 */
export interface KfacState {
  /** Input width of the linear (without the bias augmentation). */
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: boolean;
  /** `Σ x̃ x̃ᵀ`, `[in', in']` row-major, `in' = in + (bias ? 1 : 0)`. */
  readonly xx: Float64Array;
  /** `Σ γ γᵀ`, `[out, out]`. */
  readonly gg: Float64Array;
  /** `Σ x̃ γᵀ`, `[in', out]` (kernel-layout gradient sum). */
  readonly xg: Float64Array;
  /** Number of tokens accumulated so far. */
  tokens: number;
}

/** Finalized KFAC factors of one linear (see the module doc for the scaling). */
export interface KfacFactors {
  /** `mean_t x̃ x̃ᵀ`, `[in', in']`. */
  A: Matrix;
  /** `mean_t γ γᵀ`, `[out, out]`. */
  G: Matrix;
  /** `∂ℓ/∂Wk` of the mean loss, kernel layout `[in', out]` (bias gradient last when augmented). */
  g: Matrix;
  /** Number of calibration tokens N. */
  tokens: number;
}

function emptyState(inFeatures: number, outFeatures: number, bias: boolean): KfacState {
  const inAug = inFeatures + (bias ? 1 : 0);
  return {
    inFeatures,
    outFeatures,
    bias,
    xx: new Float64Array(inAug * inAug),
    gg: new Float64Array(outFeatures * outFeatures),
    xg: new Float64Array(inAug * outFeatures),
    tokens: 0,
  };
}

/**
 * Adds one chunk of calibration tokens to the running sums of a linear
 * (METHOD.md §2, KFAC). `x` is `[N, in]` (the linear's inputs, one row per
 * token; padding tokens must be left out), `gamma` is `[N, out]` (`∂ℓ/∂y_t`).
 * Pass `undefined` as `state` for the first chunk; the state is updated in
 * place and returned. Chunking does not change the result; an empty chunk
 * is an error (linalg matrices have at least one row).
 */
export function accumulateKfac(
  state: KfacState | undefined,
  x: Matrix,
  gamma: Matrix,
  options: KfacOptions = {},
): KfacState {
  checkShape(x, "KFAC input x");
  checkShape(gamma, "KFAC output gradient gamma");
  if (x.rows !== gamma.rows) {
    throw new Error(
      `KFAC input x has ${x.rows} tokens but output gradient gamma has ${gamma.rows}`,
    );
  }
  const scale = options.gradScale ?? 1;
  if (!(Number.isFinite(scale) && scale > 0)) {
    throw new Error(`KFAC gradScale must be a positive finite number, got ${scale}`);
  }
  const bias = options.bias ?? false;
  const s = state ?? emptyState(x.cols, gamma.cols, bias);
  if (s.inFeatures !== x.cols || s.outFeatures !== gamma.cols) {
    throw new Error(
      `KFAC chunk is [${x.cols} in, ${gamma.cols} out] but the state was started for [${s.inFeatures} in, ${s.outFeatures} out]`,
    );
  }
  if (state && options.bias !== undefined && options.bias !== s.bias) {
    throw new Error(`KFAC bias option ${options.bias} differs from the state's (${s.bias})`);
  }
  const n = x.rows;
  const inF = s.inFeatures;
  const inAug = inF + (s.bias ? 1 : 0);
  const out = s.outFeatures;

  const xx = gramTransposed(x); // [in, in]
  for (let i = 0; i < inF; i++) {
    for (let j = 0; j < inF; j++) s.xx[i * inAug + j] += xx.data[i * inF + j];
  }
  const gg = gramTransposed(gamma); // [out, out]
  const scale2 = scale * scale;
  for (let k = 0; k < out * out; k++) s.gg[k] += scale2 * gg.data[k];
  const xg = matmul(x, gamma, true, false); // [in, out]
  for (let i = 0; i < inF; i++) {
    for (let j = 0; j < out; j++) s.xg[i * out + j] += scale * xg.data[i * out + j];
  }
  if (s.bias) {
    // Augmented row/column `in`: Σ x (symmetric), Σ 1 = N, and Σ γ (bias gradient).
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < inF; i++) {
        const v = x.data[t * inF + i];
        s.xx[i * inAug + inF] += v;
        s.xx[inF * inAug + i] += v;
      }
      for (let j = 0; j < out; j++) s.xg[inF * out + j] += scale * gamma.data[t * out + j];
    }
    s.xx[inF * inAug + inF] += n;
  }
  s.tokens += n;
  return s;
}

/**
 * Adds the sums of `b` into `a` (in place, returned): statistics of disjoint
 * token sets from data-parallel workers combine exactly (DESIGN.md "Scale").
 */
export function mergeKfac(a: KfacState, b: KfacState): KfacState {
  if (a.inFeatures !== b.inFeatures || a.outFeatures !== b.outFeatures || a.bias !== b.bias) {
    throw new Error(
      `Cannot merge KFAC states of [${a.inFeatures} in, ${a.outFeatures} out, bias ${a.bias}] and [${b.inFeatures} in, ${b.outFeatures} out, bias ${b.bias}]`,
    );
  }
  for (let k = 0; k < a.xx.length; k++) a.xx[k] += b.xx[k];
  for (let k = 0; k < a.gg.length; k++) a.gg[k] += b.gg[k];
  for (let k = 0; k < a.xg.length; k++) a.xg[k] += b.xg[k];
  a.tokens += b.tokens;
  return a;
}

function meanMatrix(sum: Float64Array, rows: number, cols: number, n: number, label: string): Matrix {
  const data = new Float32Array(rows * cols);
  for (let k = 0; k < data.length; k++) {
    const v = sum[k] / n;
    if (!Number.isFinite(v)) {
      throw new Error(
        `KFAC ${label} has a non-finite value at [${Math.floor(k / cols)}, ${k % cols}]: check the calibration inputs and gradients`,
      );
    }
    data[k] = v;
  }
  return { rows, cols, data };
}

/**
 * Turns running sums into the factors `A`, `G`, `g` of the mean calibration
 * loss (module doc: scaling, layout and bias augmentation). Leaves the state
 * untouched, so accumulation may continue afterwards.
 */
export function finalizeKfac(state: KfacState): KfacFactors {
  const n = state.tokens;
  if (n === 0) throw new Error("Cannot finalize KFAC statistics: no tokens were accumulated");
  const inAug = state.inFeatures + (state.bias ? 1 : 0);
  const out = state.outFeatures;
  return {
    A: meanMatrix(state.xx, inAug, inAug, n, "factor A"),
    G: meanMatrix(state.gg, out, out, n, "factor G"),
    g: meanMatrix(state.xg, inAug, out, n, "gradient g"),
    tokens: n,
  };
}
