/**
 * Selective Channel Pruning of an MLP (docs/METHOD.md §2 SCP): keep the `m'`
 * intermediate channels of largest GCS (`src/score/gcs.ts` `scpScores`) and
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

/**
 * The `width` channels of largest score, as ascending channel indices
 * (`[width]`); ties go to the lower index.
 */
export function selectScpChannels(scores: Float32Array, width: number): Int32Array {
  const m = scores.length;
  if (!Number.isInteger(width) || width < 1 || width > m) {
    throw new Error(`SCP width must be an integer in [1, ${m}], got ${width}`);
  }
  const bad = scores.findIndex((v) => Number.isNaN(v));
  if (bad >= 0) throw new Error(`SCP score of channel ${bad} is NaN`);
  const order = Array.from({ length: m }, (_, j) => j)
    .sort((a, b) => scores[b] - scores[a] || a - b);
  return Int32Array.from(order.slice(0, width)).sort();
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
