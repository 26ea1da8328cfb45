/**
 * Streaming KFAC statistics of one linear map (docs/METHOD.md §2 "Hessian by KFAC").
 *
 * Layout: inputs and weights are in *kernel layout* (`src/model/types.ts`):
 * `y = x Wk + b` with `Wk = Wᵀ` of shape `[in, out]`. The gradient `g` is
 * therefore returned as `∂ℓ/∂Wk` `[in, out]`, the transpose of docs/METHOD.md's
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
 * Gradient: with `gradient: false` no `g` is summed (no `[in', out]` sum,
 * no `x̃ γᵀ` product per chunk) and the factors have none: a ReLU MLP's
 * fc1 and fc2, whose first-order SCP terms come from the block's channel
 * products instead (`src/stats/channel_products.ts`, docs/GRADOT.md
 * "SCP's first-order terms").
 *
 * Sums are float32, accumulated in place by the BLAS (`ssyrk`/`sgemm` with
 * beta 1: no temporary the size of a factor), so a block's statistics cost
 * 4 bytes per entry of `A`, `G` and `g` (when summed). A factor the caller marks
 * `rowHeld` (SCP's `G₁` and `A₂`, the MLP width m on a side) is kept as its
 * rows while the token count is at most half its side, N·m floats instead
 * of m² (`src/stats/symmetric_factor.ts`), and turns dense beyond that.
 * A linear whose inputs are never negative (`nonNegativeInputs`: a ReLU
 * MLP's output linear reads ReLU outputs) keeps its `A` as the column L1
 * norms alone, summed as `Σ_t x_tj (Σ_k x_tk)`: every entry of `A` is then a
 * sum of non-negative products, so `‖A[:,j]‖₁ = Σ_k A_kj` exactly, at O(N·in)
 * instead of the Gram's O(N·in²) (docs/GRADOT.md "Benchmarks").
 * Linears fed the very same inputs (q, k, v) can share one `A`
 * (`inputOf`): summed once, held once. KFAC sums are additive:
 * {@link mergeKfac} joins data-parallel workers.
 *
 * @module
 */
import { gramAccumulateUpper, matmulAccumulate, symmetrizeUpper } from "../linalg/gemm.ts";
import { checkFinite, checkShape, type Matrix } from "../linalg/matrix.ts";
import { giveScratch, takeScratch, takeZeroedScratch } from "../linalg/scratch_arrays.ts";
import { columnsFactor, denseFactor, rowFactor, type SymmetricFactor, upperColumnAbsSums } from "./symmetric_factor.ts";

/** Options of {@link accumulateKfac}: `gradScale` is per chunk; the others are fixed by the first chunk. */
export interface KfacOptions {
  /**
   * Factor turning this chunk's `gamma` into gradients of the summed token
   * loss: the number of tokens the differentiated loss was averaged over
   * (default 1).
   */
  gradScale?: number;
  /** Augment inputs with a constant 1 so the bias is row `in` of the weight. */
  bias?: boolean;
  /**
   * Sum the weight gradient `g` (default true); false for linears whose
   * first-order terms come from elsewhere (module doc), which then have no `g`.
   */
  gradient?: boolean;
  /**
   * Hold `A` and/or `G` as their rows while at most half as many tokens as
   * the factor's side have been seen (for factors whose consumers need only
   * {@link SymmetricFactor.columnAbsSums}).
   */
  rowHeld?: { A?: boolean; G?: boolean };
  /**
   * The inputs `x` are never negative: `A` is summed and kept as its column
   * L1 norms only (module doc), for consumers that need no more
   * ({@link SymmetricFactor.columnAbsSums}). A negative input is an error.
   */
  nonNegativeInputs?: boolean;
  /**
   * The state of a linear fed the very same `x`, chunk for chunk (q, k and v
   * read one normed input): this state then keeps no `A` sum of its own and
   * takes that state's `A` when finalized (after it). Fixed by the first chunk.
   */
  inputOf?: KfacState;
}

/**
 * One factor's running sum: dense (upper triangle valid) or the rows seen so
 * far. A dense sum that began as rows (`columnsOnly`: its consumers need only
 * column L1 norms) finalizes to those norms alone.
 */
type GramSum =
  | { kind: "dense"; sum: Matrix; columnsOnly: boolean }
  | { kind: "rows"; chunks: Matrix[]; rows: number };

/** Any factor's running sum: a Gram's, or an input factor's column sums. */
type FactorSum = GramSum | ColumnSums;

/** An input factor of non-negative inputs, held as `Σ_t x_tj (Σ_k x_tk)` per column j (float64). */
type ColumnSums = { kind: "columns"; sums: Float64Array };

/** An input factor held by another linear's state, which sees the same inputs. */
type SharedSum = { kind: "shared"; owner: KfacState };

/**
 * Running float32 sums for one linear. Treat as opaque; it is an accumulator
 * owned by the caller, updated in place by {@link accumulateKfac} and
 * consumed by {@link finalizeKfac}.
 */
export interface KfacState {
  /** Input width of the linear (without the bias augmentation). */
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: boolean;
  /** `Σ x̃ x̃ᵀ`, `[in', in']`, `in' = in + (bias ? 1 : 0)`, or the state holding it. */
  xx: FactorSum | SharedSum;
  /** `Σ γ γᵀ`, `[out, out]`. */
  gg: GramSum;
  /** `Σ x̃ γᵀ`, `[in', out]` row-major (kernel-layout gradient sum); absent with `gradient: false`. */
  readonly xg?: Matrix;
  /** Number of tokens accumulated so far (-1 once finalized). */
  tokens: number;
  /** Set by {@link finalizeKfac}, for the states sharing this one's `A`. */
  finalized?: KfacFactors;
}

/** Finalized KFAC factors of one linear (see the module doc for the scaling). */
export interface KfacFactors {
  /** `mean_t x̃ x̃ᵀ`, `[in', in']`. */
  A: SymmetricFactor;
  /** `mean_t γ γᵀ`, `[out, out]`. */
  G: SymmetricFactor;
  /**
   * `∂ℓ/∂Wk` of the mean loss, kernel layout `[in', out]` (bias gradient
   * last when augmented); absent when accumulated with `gradient: false`.
   */
  g?: Matrix;
  /** Number of calibration tokens N. */
  tokens: number;
}

/** A zero `[rows, cols]` running sum, in reused memory where the pool has some (src/linalg/scratch_arrays.ts). */
const zeros = (rows: number, cols: number): Matrix => ({ rows, cols, data: takeZeroedScratch(rows * cols) });

/** A copy of `m` in reused memory where the pool has some. */
function scratchCopy(m: Matrix): Matrix {
  const data = takeScratch(m.data.length);
  data.set(m.data);
  return { ...m, data };
}

function emptySum(size: number, rowHeld: boolean): GramSum {
  return rowHeld ? { kind: "rows", chunks: [], rows: 0 } : { kind: "dense", sum: zeros(size, size), columnsOnly: false };
}

/** The dense form of a running sum (a row-held one is reduced and dropped). */
function densified(f: GramSum, size: number): GramSum & { kind: "dense" } {
  if (f.kind === "dense") return f;
  const sum = zeros(size, size);
  for (const c of f.chunks) gramAccumulateUpper(sum, c);
  giveScratch(...f.chunks.map((c) => c.data)); // the sum's own copies, reduced
  return { kind: "dense", sum, columnsOnly: true };
}

/**
 * Whether a row-held factor of side `size` holding `rows` rows stays so
 * (docs/GRADOT.md "The pipeline"): at most half as many rows as its side;
 * beyond, it turns dense ({@link accumulateKfac}).
 */
export const staysRowHeld = (rows: number, size: number): boolean => 2 * rows <= size;

/**
 * Adds `Σ_t x_tj (Σ_k x_tk)` for every column j of the non-negative `x`
 * (`[n, in']`) to `f`, in float64: the column sums of `xᵀx`.
 *
 * @throws Error when an input is negative (`nonNegativeInputs` was wrong)
 */
function addColumnSums(f: ColumnSums, x: Matrix): void {
  const { rows, cols, data } = x;
  const sums = f.sums;
  for (let t = 0; t < rows; t++) {
    const row = t * cols;
    let total = 0; // Σ_k x_tk
    for (let k = row; k < row + cols; k++) {
      const v = data[k];
      if (v < 0) throw new Error(`KFAC factor A: input ${v} at (${t}, ${k - row}) is negative, but the linear was declared to read non-negative inputs`);
      total += v;
    }
    for (let j = 0; j < cols; j++) sums[j] += data[row + j] * total;
  }
}

/**
 * Adds rows `r` (`[n, size]`, owned by the sum from now on) to a running sum.
 * A row-held sum stays so while it holds at most half as many rows as its
 * side: beyond that the memory saved no longer pays for reducing the rows at
 * scoring time, and it turns dense.
 */
function addRows(f: GramSum, r: Matrix): GramSum {
  const size = r.cols;
  if (f.kind === "rows" && staysRowHeld(f.rows + r.rows, size)) {
    f.chunks.push(r);
    f.rows += r.rows;
    return f;
  }
  const dense = densified(f, size);
  gramAccumulateUpper(dense.sum, r);
  return dense;
}

/** Whether the running sum `f` holds `m` as one of its chunks of rows. */
const keptAsRows = (f: FactorSum | SharedSum, m: Matrix): boolean => f.kind === "rows" && f.chunks.includes(m);

/** `[x, 1]` row by row, `[n, in + 1]`. */
function augmented(x: Matrix): Matrix {
  const out: Matrix = { rows: x.rows, cols: x.cols + 1, data: takeScratch(x.rows * (x.cols + 1)) }; // every entry set below
  for (let t = 0; t < x.rows; t++) {
    out.data.set(x.data.subarray(t * x.cols, (t + 1) * x.cols), t * out.cols);
    out.data[t * out.cols + x.cols] = 1;
  }
  return out;
}

/**
 * Adds one chunk of calibration tokens to the running sums of a linear
 * (docs/METHOD.md §2, KFAC). `x` is `[N, in]` (the linear's inputs, one row per
 * token; padding tokens must be left out), `gamma` is `[N, out]` (`∂ℓ/∂y_t`).
 * Pass `undefined` as `state` for the first chunk; the state is updated in
 * place and returned. Chunking does not change the result; an empty chunk
 * is an error (linalg matrices have at least one row). A row-held factor
 * keeps a copy of the chunk's rows, never `x` or `gamma` themselves.
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
  if (state && state.tokens < 0) throw new Error("KFAC state was already finalized");
  const bias = options.bias ?? false;
  const gradient = options.gradient ?? true;
  const inAug = x.cols + (bias ? 1 : 0);
  const owner = options.inputOf;
  if (!state && owner && (owner.inFeatures !== x.cols || owner.bias !== bias || owner.tokens < 0)) {
    throw new Error(
      `KFAC input sharing needs a live state of the same inputs: [${x.cols} in, bias ${bias}] cannot share [${owner.inFeatures} in, bias ${owner.bias}]${owner.tokens < 0 ? " (finalized)" : ""}`,
    );
  }
  const s: KfacState = state ?? {
    inFeatures: x.cols,
    outFeatures: gamma.cols,
    bias,
    xx: owner
      ? { kind: "shared", owner }
      : options.nonNegativeInputs
      ? { kind: "columns", sums: new Float64Array(inAug) }
      : emptySum(inAug, options.rowHeld?.A ?? false),
    gg: emptySum(gamma.cols, options.rowHeld?.G ?? false),
    ...(gradient ? { xg: zeros(inAug, gamma.cols) } : {}),
    tokens: 0,
  };
  if (s.inFeatures !== x.cols || s.outFeatures !== gamma.cols) {
    throw new Error(
      `KFAC chunk is [${x.cols} in, ${gamma.cols} out] but the state was started for [${s.inFeatures} in, ${s.outFeatures} out]`,
    );
  }
  if (state && options.bias !== undefined && options.bias !== s.bias) {
    throw new Error(`KFAC bias option ${options.bias} differs from the state's (${s.bias})`);
  }
  if (state && options.gradient !== undefined && options.gradient !== (s.xg !== undefined)) {
    throw new Error(`KFAC gradient option ${options.gradient} differs from the state's (${s.xg !== undefined})`);
  }
  const xs = s.bias ? augmented(x) : s.xx.kind === "rows" ? scratchCopy(x) : x; // [N, in']
  const gs = scale !== 1
    ? { ...gamma, data: gamma.data.map((v) => v * scale) }
    : s.gg.kind === "rows" ? scratchCopy(gamma) : gamma; // [N, out]
  if (s.xx.kind === "columns") addColumnSums(s.xx, xs);
  else if (s.xx.kind !== "shared") s.xx = addRows(s.xx, xs);
  s.gg = addRows(s.gg, gs);
  if (s.xg) matmulAccumulate(s.xg, xs, gs, true, false); // [in', out]
  s.tokens += x.rows;
  // A copy the sums did not keep as rows is spent.
  if (xs !== x && !keptAsRows(s.xx, xs)) giveScratch(xs.data);
  if (gs !== gamma && !keptAsRows(s.gg, gs)) giveScratch(gs.data);
  return s;
}

/**
 * Adds the sums of `b` into `a` (in place, returned; `b` is consumed):
 * statistics of disjoint token sets from data-parallel workers combine
 * exactly (docs/DESIGN.md "Scale").
 */
export function mergeKfac(a: KfacState, b: KfacState): KfacState {
  if (a.inFeatures !== b.inFeatures || a.outFeatures !== b.outFeatures || a.bias !== b.bias) {
    throw new Error(
      `Cannot merge KFAC states of [${a.inFeatures} in, ${a.outFeatures} out, bias ${a.bias}] and [${b.inFeatures} in, ${b.outFeatures} out, bias ${b.bias}]`,
    );
  }
  if (a.tokens < 0 || b.tokens < 0) throw new Error("Cannot merge a finalized KFAC state");
  const merge = (x: GramSum, y: GramSum, size: number): GramSum => {
    if (y.kind === "rows") return y.chunks.reduce(addRows, x);
    const dense = densified(x, size);
    for (let k = 0; k < dense.sum.data.length; k++) dense.sum.data[k] += y.sum.data[k];
    return dense;
  };
  const mergeInput = (x: FactorSum, y: FactorSum, size: number): FactorSum => {
    if (x.kind !== "columns" && y.kind !== "columns") return merge(x, y, size);
    if (x.kind !== "columns" || y.kind !== "columns") throw new Error("Cannot merge a KFAC factor held as column sums with one that is not");
    for (let j = 0; j < x.sums.length; j++) x.sums[j] += y.sums[j];
    return x;
  };
  const inAug = a.inFeatures + (a.bias ? 1 : 0);
  if ((a.xg === undefined) !== (b.xg === undefined)) {
    throw new Error("Cannot merge a KFAC state that sums its gradient g with one that does not");
  }
  if ((a.xx.kind === "shared") !== (b.xx.kind === "shared")) {
    throw new Error("Cannot merge a KFAC state that shares its input factor with one that does not");
  }
  // Shared input factors are merged with their owners' states.
  if (a.xx.kind !== "shared" && b.xx.kind !== "shared") a.xx = mergeInput(a.xx, b.xx, inAug);
  a.gg = merge(a.gg, b.gg, a.outFeatures);
  if (a.xg && b.xg) for (let k = 0; k < a.xg.data.length; k++) a.xg.data[k] += b.xg.data[k];
  a.tokens += b.tokens;
  return a;
}

/** Checks every entry of `m` (symmetric: of its upper triangle) is finite, naming the factor. */
function checkStatistic(m: Matrix, label: string, symmetric = false): void {
  try {
    checkFinite(m, `KFAC ${label}`, symmetric);
  } catch (e) {
    throw new Error(`${(e as Error).message}: check the calibration inputs and gradients`);
  }
}

/** Divides `m` by `n` in place and checks every entry is finite. */
function meanInPlace(m: Matrix, n: number, label: string): Matrix {
  for (let k = 0; k < m.data.length; k++) m.data[k] /= n;
  checkStatistic(m, label);
  return m;
}

function finalFactor(f: FactorSum, n: number, label: string): SymmetricFactor {
  if (f.kind === "columns") {
    const j = f.sums.findIndex((v) => !Number.isFinite(v));
    if (j >= 0) throw new Error(`KFAC ${label} has a non-finite column sum ${f.sums[j]} at column ${j}: check the calibration inputs and gradients`);
    for (let k = 0; k < f.sums.length; k++) f.sums[k] /= n;
    return columnsFactor(f.sums);
  }
  if (f.kind === "rows") {
    for (const c of f.chunks) checkStatistic(c, `${label} (rows)`);
    return rowFactor(f.chunks, 1 / n);
  }
  if (f.columnsOnly) {
    const sums = upperColumnAbsSums(f.sum, 1 / n);
    if (sums.some((v) => !Number.isFinite(v))) checkStatistic(f.sum, label, true); // names the entry
    giveScratch(f.sum.data); // reduced to its column sums
    return columnsFactor(sums);
  }
  symmetrizeUpper(f.sum, n);
  checkStatistic(f.sum, label, true);
  return denseFactor(f.sum);
}

/**
 * Turns running sums into the factors `A`, `G` and (when summed) `g` of the
 * mean calibration loss (module doc: scaling, layout, bias augmentation and
 * gradient). The factors take
 * over the state's buffers (no copy), so the state is consumed: accumulating
 * into it or finalizing it again is an error.
 */
export function finalizeKfac(state: KfacState): KfacFactors {
  const n = state.tokens;
  if (n < 0) throw new Error("KFAC state was already finalized");
  if (n === 0) throw new Error("Cannot finalize KFAC statistics: no tokens were accumulated");
  const A = state.xx.kind === "shared" ? sharedFactor(state.xx.owner, n) : finalFactor(state.xx, n, "factor A");
  state.tokens = -1;
  state.finalized = {
    A,
    G: finalFactor(state.gg, n, "factor G"),
    ...(state.xg ? { g: meanInPlace(state.xg, n, "gradient g") } : {}),
    tokens: n,
  };
  return state.finalized;
}

/** The `A` of the state whose inputs a state shares, once that state is finalized over the same `n` tokens. */
function sharedFactor(owner: KfacState, n: number): SymmetricFactor {
  const factors = owner.finalized;
  if (!factors) throw new Error("KFAC state shares the input factor of a state that is not finalized yet: finalize that one first");
  if (factors.tokens !== n) {
    throw new Error(`KFAC state saw ${n} tokens but the state whose input factor it shares saw ${factors.tokens}`);
  }
  return factors.A;
}
