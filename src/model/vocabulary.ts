/**
 * The vocabulary matrices (token embedding, LM head) streamed from the
 * checkpoint by rows instead of held in memory (docs/DESIGN.md "Scale"): on an
 * OPT-1.3B-sized model the `[V, d]` embedding alone is 0.41 GB of float32,
 * more than a block. A calibration pass needs only
 *
 * - the rows of the token ids it embeds ({@link gatherRows}), and
 * - the next-token loss and its gradient at the head's input, which
 *   {@link streamedLmLossGrad} computes vocabulary chunk by chunk with an
 *   online log-sum-exp, so no `[tokens, V]` logits and no `[V, d]` matrix
 *   are ever resident.
 *
 * The products run through OpenBLAS (`src/linalg/gemm.ts`); the logits of a
 * chunk live on the tensor backend's heap for its `Softmax` kernel.
 *
 * @module
 */
import type { StreamedShardTensor } from "../io/shard_schema.ts";
import { matmulInto } from "../linalg/gemm.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { StreamedVocabulary } from "../records/records.ts";
import { tf } from "../tensor/backend.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";

/** A `[rows, width]` matrix stored row-major in a file, read a range of rows at a time. */
export interface VocabularyRows {
  /** The tensor's name in the checkpoint, for messages and for writing it out. */
  readonly name: string;
  /** V. */
  readonly rows: number;
  /** d. */
  readonly width: number;
  /**
   * Rows `[start, start + count)` as float32 `[count, width]`: a fresh array,
   * or with `out` (at least that long) a view of its front, so a sweep
   * reuses one buffer. Use the returned array.
   */
  read(start: number, count: number, out?: Float32Array): Float32Array;
}

/** Vocabulary rows per read when a whole matrix is swept (~8 MiB of float32 at d = 1024). */
const SWEEP_ROWS = 2048;

/**
 * The most rows between two wanted ids that {@link gatherRows} reads through
 * rather than starting a new read: a read costs about what decoding a few
 * rows does. 2,012 distinct random ids of OPT-125M's 50,272 rows: 140 ms
 * read in spans of up to 2,048 rows (the whole matrix), 11 ms with gaps of
 * at most 4, 16 ms at 8, 13 ms at 1 (docs/DISTRIBUTED.md "Where 2 slots wait").
 */
const GATHER_GAP_ROWS = 4;

/**
 * The rows of `ids`' distinct tokens, as a compact embedding table `[U, d]`
 * (U distinct ids, ascending) and `ids` remapped into it: a model embeds the
 * remapped ids with the compact table exactly as it would embed `ids` with
 * the whole matrix.
 *
 * @throws RangeError naming the first id outside `[0, V)`
 */
export function gatherRows(matrix: VocabularyRows, ids: Int32Array): { table: Float32Array; remapped: Int32Array } {
  const distinct = [...new Set(ids)].sort((a, b) => a - b);
  const bad = distinct.find((id) => !(Number.isInteger(id) && id >= 0 && id < matrix.rows));
  if (bad !== undefined) {
    throw new RangeError(`Token id ${bad} is outside the vocabulary of "${matrix.name}" (size ${matrix.rows})`);
  }
  const d = matrix.width;
  const table = new Float32Array(distinct.length * d); // [U, d]
  const buffer = new Float32Array(Math.min(SWEEP_ROWS, matrix.rows) * d); // every span's rows in turn
  for (let i = 0; i < distinct.length;) {
    // One read covers a run of wanted ids at most GATHER_GAP_ROWS apart, within SWEEP_ROWS of the first.
    const start = distinct[i];
    let end = i + 1;
    while (end < distinct.length && distinct[end] - distinct[end - 1] <= GATHER_GAP_ROWS && distinct[end] < start + SWEEP_ROWS) end++;
    const rows = matrix.read(start, distinct[end - 1] - start + 1, buffer); // [span, d]
    for (let j = i; j < end; j++) table.set(rows.subarray((distinct[j] - start) * d, (distinct[j] - start + 1) * d), j * d);
    i = end;
  }
  const position = new Map(distinct.map((id, i) => [id, i]));
  return { table, remapped: Int32Array.from(ids, (id) => position.get(id)!) };
}

/** What {@link streamedLmLossGrad} returns. */
export interface StreamedLoss {
  /** Σ over rows of `−log softmax(h Eᵀ)[target]`. */
  lossSum: number;
  /** `∂ lossSum / ∂h`, `[R, d]`. */
  dh: Matrix;
}

/**
 * Vocabulary rows per chunk of {@link streamedLmLossGrad}: fixed, not chosen
 * by the number of rows, so each row's loss and gradient are the same bits
 * however the rows are grouped into calls (a GradOT build on a pool splits
 * the head by calibration chunk, docs/DISTRIBUTED.md "Where 2 slots wait").
 * The logits `[R, c]` of the head's largest calls (4,096 rows) hold 8 Mi values.
 */
const VOCABULARY_CHUNK = 2048;

/**
 * The summed next-token loss of `R` positions and its gradient at the head's
 * input `h` `[R, d]` (the final-normed hidden states), with the head matrix
 * `head` `[V, d]` (logits `h Eᵀ`) streamed in vocabulary chunks.
 *
 * Per row r it keeps the running maximum `m_r`, `s_r = Σ_v exp(l_rv − m_r)`
 * and `a_r = Σ_v exp(l_rv − m_r) E_v`, rescaling both by `exp(m_old − m_new)`
 * when the maximum grows (the online softmax). At the end
 * `loss_r = m_r + log s_r − l_r,target` and `∂loss_r/∂h_r = a_r / s_r − E_target`.
 *
 * Each chunk's exponentials come from the tensor backend's `Softmax` kernel
 * (on wasm XNNPACK's vectorised one; `Math.exp` on 10⁸ logits was 1.3 s of an
 * OPT-125M build, docs/GRADOT.md "Benchmarks"): `p = exp(l − μ) / z` per row,
 * with the chunk's own row maximum μ at the argmax, where `p = 1 / z`; so the
 * chunk adds `z · exp(μ − m_r)` to `s_r` and that times `p E` to `a_r`. The
 * logits are written by the BLAS straight into the kernel's input.
 *
 * @param targets the next token of each row, `[R]`, each in `[0, V)`
 * @param chunk vocabulary rows per chunk (default {@link VOCABULARY_CHUNK})
 */
export function streamedLmLossGrad(
  h: Matrix, // [R, d]
  targets: Int32Array, // [R]
  head: VocabularyRows, // [V, d]
  chunk = VOCABULARY_CHUNK,
): StreamedLoss {
  const r = h.rows;
  const d = h.cols;
  if (d !== head.width) throw new Error(`streamedLmLossGrad: hidden width ${d} differs from "${head.name}"'s ${head.width}`);
  if (targets.length !== r) throw new Error(`streamedLmLossGrad: ${targets.length} targets for ${r} rows`);
  for (const t of targets) {
    if (!(t >= 0 && t < head.rows)) throw new RangeError(`Target token ${t} is outside the vocabulary of "${head.name}" (size ${head.rows})`);
  }
  const max = new Float64Array(r).fill(-Infinity); // m_r
  const sum = new Float64Array(r); // s_r
  const targetLogit = new Float64Array(r);
  const acc: Matrix = { rows: r, cols: d, data: new Float32Array(r * d) }; // a_r, [R, d]
  const dh: Matrix = { rows: r, cols: d, data: new Float32Array(r * d) }; // −E_target so far, [R, d]
  const rows = new Float32Array(Math.min(chunk, head.rows) * d); // one read buffer for the sweep
  const chunkMax = new Float64Array(r); // μ_r
  const weight = new Float64Array(r); // z_r · exp(μ_r − m_r): the chunk's share of s_r per unit of p
  const pe: Matrix = { rows: r, cols: d, data: new Float32Array(r * d) }; // Σ_j p_rj E_j of a chunk, [R, d], one buffer for the sweep
  for (let v0 = 0; v0 < head.rows; v0 += chunk) {
    const c = Math.min(chunk, head.rows - v0);
    const e: Matrix = { rows: c, cols: d, data: head.read(v0, c, rows) }; // [c, d]
    const logits = filledTensor([r, c], (out) => matmulInto({ rows: r, cols: c, data: out }, h, e, false, true)); // [R, c]
    const argmax = rowMaxima(peekValues(logits), c, chunkMax);
    gatherTargets(peekValues(logits), c, targets, v0, targetLogit, dh.data, e.data, d);
    const probs = tf.softmax(logits); // [R, c]: exp(l − μ_r) / z_r
    logits.dispose();
    const p = peekValues(probs);
    for (let i = 0; i < r; i++) {
      const m = Math.max(max[i], chunkMax[i]);
      if (m > max[i]) {
        const rescale = Math.exp(max[i] - m); // 0 on the first chunk
        sum[i] *= rescale;
        const a = acc.data.subarray(i * d, (i + 1) * d);
        for (let k = 0; k < d; k++) a[k] *= rescale;
        max[i] = m;
      }
      weight[i] = Math.exp(chunkMax[i] - m) / p[i * c + argmax[i]]; // z_r exp(μ_r − m_r), as p = 1/z at the argmax
      sum[i] += weight[i];
    }
    matmulInto(pe, { rows: r, cols: c, data: p }, e);
    addWeightedRows(acc, pe, weight); // a_r += w_r Σ_j p_rj E_j
    probs.dispose();
  }
  let lossSum = 0;
  for (let i = 0; i < r; i++) {
    lossSum += max[i] + Math.log(sum[i]) - targetLogit[i];
    const inv = 1 / sum[i];
    for (let k = i * d; k < (i + 1) * d; k++) dh.data[k] += acc.data[k] * inv;
  }
  return { lossSum, dh };
}

/** Each row's maximum of `l` `[R, c]` into `maxima` `[R]`; returns the first argmax of each row, `[R]`. */
function rowMaxima(l: Float32Array, c: number, maxima: Float64Array): Int32Array {
  const argmax = new Int32Array(maxima.length);
  for (let i = 0; i < maxima.length; i++) {
    const row = i * c;
    let best = row;
    for (let j = row + 1; j < row + c; j++) if (l[j] > l[best]) best = j;
    maxima[i] = l[best];
    argmax[i] = best - row;
  }
  return argmax;
}

/**
 * For the rows whose target lies in this chunk (vocabulary rows from `v0`):
 * its logit into `targetLogit`, and `−E_target` into `dh` `[R, d]`.
 */
function gatherTargets(
  l: Float32Array, // [R, c]
  c: number,
  targets: Int32Array, // [R]
  v0: number,
  targetLogit: Float64Array, // [R]
  dh: Float32Array, // [R, d]
  e: Float32Array, // [c, d]
  d: number,
): void {
  for (let i = 0; i < targets.length; i++) {
    const target = targets[i] - v0;
    if (target < 0 || target >= c) continue;
    targetLogit[i] = l[i * c + target];
    for (let k = 0; k < d; k++) dh[i * d + k] = -e[target * d + k];
  }
}

/** `acc[i, :] += weight[i] · rows[i, :]` for every row i (`[R, d]` both). */
function addWeightedRows(acc: Matrix, rows: Matrix, weight: Float64Array): void {
  const d = acc.cols;
  for (let i = 0; i < acc.rows; i++) {
    const w = weight[i];
    for (let k = i * d; k < (i + 1) * d; k++) acc.data[k] += w * rows.data[k];
  }
}

/** Values of one transposed-head run: `[rows, V]` output rows gathered per sweep of the matrix. */
const TRANSPOSED_RUN_VALUES = 1 << 23;

/**
 * A streamed vocabulary's matrices as shard columns streamed from the
 * checkpoint, by HF name in kernel layout: the embedding `[V, d]` as stored,
 * {@link SWEEP_ROWS} rows per run; an untied head `[d, V]`, transposed from
 * its stored `[V, d]` a band of output rows (at most 32 MiB) per sweep of
 * the matrix (`bandValues` values). Tied, the one matrix is listed once.
 * What `outer` would hold without streaming, never resident whole.
 */
export function vocabularyShardTensors(
  vocabulary: StreamedVocabulary,
  bandValues = TRANSPOSED_RUN_VALUES,
): StreamedShardTensor[] {
  const { embedding, head } = vocabulary;
  const asStored = (m: VocabularyRows): StreamedShardTensor => ({
    name: m.name,
    shape: [m.rows, m.width],
    stream: (emit) => {
      const buffer = new Float32Array(Math.min(SWEEP_ROWS, m.rows) * m.width); // each run is written before the next read
      for (let start = 0; start < m.rows; start += SWEEP_ROWS) emit(m.read(start, Math.min(SWEEP_ROWS, m.rows - start), buffer));
    },
  });
  const transposed = (m: VocabularyRows): StreamedShardTensor => ({
    name: m.name,
    shape: [m.width, m.rows],
    stream: (emit) => {
      const { rows: v, width: d } = m;
      const band = Math.max(1, Math.min(d, Math.floor(bandValues / v)));
      const buffer = new Float32Array(Math.min(SWEEP_ROWS, v) * d);
      for (let from = 0; from < d; from += band) {
        const to = Math.min(d, from + band);
        const out = new Float32Array((to - from) * v); // [to − from, V]
        for (let start = 0; start < v; start += SWEEP_ROWS) {
          const count = Math.min(SWEEP_ROWS, v - start);
          const rows = m.read(start, count, buffer); // [count, d]
          for (let r = 0; r < count; r++) {
            for (let c = from; c < to; c++) out[(c - from) * v + start + r] = rows[r * d + c];
          }
        }
        emit(out);
      }
    },
  });
  return head === embedding ? [asStored(embedding)] : [asStored(embedding), transposed(head)];
}
