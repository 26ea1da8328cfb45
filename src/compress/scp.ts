/**
 * Selective Channel Pruning of an MLP (docs/METHOD.md §2 SCP): keep the `m'`
 * intermediate channels of largest GCS (`src/score/gcs.ts` `scpScores`; ties
 * by channel weight magnitude) and
 * physically remove the others, so the emulator's MLP is `d×m'` and `m'×d`.
 *
 * Layout: kernel layout (`src/model/types.ts`). Channel j is column j of each
 * input weight `[d, m]` (fc1; gate and up for SwiGLU) and entry j of its bias,
 * and row j of the output weight `[m, d]` (fc2 / down). Kept channels stay in
 * their original order, so the pruned MLP computes exactly what the full MLP
 * computes with the removed channels zeroed.
 *
 * @module
 */
import { checkShape, type Matrix } from "../linalg/matrix.ts";
import type { ChannelMlp, MlpLinear } from "../score/gcs.ts";
import { type Selection, type SelectionKind, selectTop } from "./select.ts";

/**
 * The weight magnitude of each intermediate channel, `[m]`: the L2 norm of
 * everything that produces it (its column of every input weight and its
 * input bias entries: fc1, or gate and up) times the L2 norm of its output
 * weight row (fc2 / down). SCP's secondary key among equal GCS, and the
 * primary one of `--selection magnitude` (docs/METHOD.md §2 "Ties at the cut").
 */
export function channelMagnitudes(mlp: ChannelMlp): Float64Array {
  const out = mlp.output.weight; // [m, d]
  checkShape(out, "SCP output weight");
  const m = out.rows;
  const produced = new Float64Array(m);
  for (const [index, linear] of mlp.inputs.entries()) {
    const w = linear.weight; // [d, m]
    checkShape(w, `SCP input ${index} weight`);
    if (w.cols !== m) throw new Error(`SCP input ${index} weight has ${w.cols} channels but the output weight has ${m}`);
    for (let r = 0; r < w.rows; r++) {
      for (let j = 0; j < m; j++) produced[j] += w.data[r * m + j] ** 2;
    }
    linear.bias?.forEach((v, j) => (produced[j] += v * v));
  }
  return produced.map((p, j) => {
    let consumed = 0;
    for (let c = 0; c < out.cols; c++) consumed += out.data[j * out.cols + c] ** 2;
    return Math.sqrt(p * consumed);
  });
}

/**
 * The `width` channels to keep, as ascending channel indices (`[width]`),
 * and the cut's tie note: by largest `scores` (GCS), equal scores by larger
 * `magnitudes` ({@link channelMagnitudes}), then by lower index; with
 * `selection: "magnitude"` by `magnitudes` alone (scores unused).
 */
export function selectScpChannels(
  scores: Float32Array,
  magnitudes: ArrayLike<number>,
  width: number,
  selection: SelectionKind = "gcs",
): Selection {
  const m = scores.length;
  if (!Number.isInteger(width) || width < 1 || width > m) {
    throw new Error(`SCP width must be an integer in [1, ${m}], got ${width}`);
  }
  if (magnitudes.length !== m) throw new Error(`SCP has ${m} scores but ${magnitudes.length} channel magnitudes`);
  const primary = selection === "magnitude" ? magnitudes : scores;
  return selectTop(primary, magnitudes, width, "SCP channel");
}

function keepColumns(w: Matrix, kept: Int32Array): Matrix {
  const width = kept.length;
  const data = new Float32Array(w.rows * width); // [d, m']
  for (let r = 0; r < w.rows; r++) {
    for (let c = 0; c < width; c++) data[r * width + c] = w.data[r * w.cols + kept[c]];
  }
  return { rows: w.rows, cols: width, data };
}

function keepRows(w: Matrix, kept: Int32Array): Matrix {
  const data = new Float32Array(kept.length * w.cols); // [m', d]
  kept.forEach((j, r) => data.set(w.data.subarray(j * w.cols, (j + 1) * w.cols), r * w.cols));
  return { rows: kept.length, cols: w.cols, data };
}

function checkKept(kept: Int32Array, m: number): void {
  for (let c = 0; c < kept.length; c++) {
    if (kept[c] < 0 || kept[c] >= m || (c > 0 && kept[c] <= kept[c - 1])) {
      throw new Error(
        `SCP kept channels must be strictly ascending indices in [0, ${m}), found ${kept[c]} at position ${c}`,
      );
    }
  }
}

/**
 * Removes every channel not in `kept` (ascending indices, e.g. from
 * {@link selectScpChannels}) from all input linears (weight columns and
 * bias entries) and the output linear (weight rows). The output bias is
 * unchanged and shared with the input, not copied.
 */
export function pruneMlp(mlp: ChannelMlp, kept: Int32Array): ChannelMlp {
  const m = mlp.output.weight.rows;
  checkShape(mlp.output.weight, "SCP output weight");
  checkKept(kept, m);
  const inputs = mlp.inputs.map((linear, index): MlpLinear => {
    checkShape(linear.weight, `SCP input ${index} weight`);
    if (linear.weight.cols !== m) {
      throw new Error(
        `SCP input ${index} weight has ${linear.weight.cols} channels but the output weight has ${m}`,
      );
    }
    if (linear.bias && linear.bias.length !== m) {
      throw new Error(`SCP input ${index} bias has ${linear.bias.length} values, expected ${m}`);
    }
    const weight = keepColumns(linear.weight, kept);
    if (!linear.bias) return { weight };
    const bias = linear.bias;
    return { weight, bias: Float32Array.from(kept, (j) => bias[j]) };
  });
  const output: MlpLinear = { weight: keepRows(mlp.output.weight, kept) };
  if (mlp.output.bias) output.bias = mlp.output.bias;
  return { inputs, output };
}
