/**
 * `Sum` over leading axes for the wasm backend (docs/DESIGN.md "Tensors").
 *
 * tfjs-backend-wasm 4.22 reduces only the innermost axes: any other `Sum`
 * first transposes its input so the reduced axes come last. Every bias and
 * LayerNorm gradient is such a sum (`dy` `[N, out]` summed over the N rows,
 * `Add`'s broadcast gradient), and the transpose was 11% of a pretraining
 * step on the fixtures/base shape (`node --cpu-prof`, 2026-12-04).
 *
 * This wrapper sums the rows straight off the heap instead, with no
 * transpose: as the product `1ᵀ · values` by the OpenBLAS `sgemm` that the
 * wasm matmuls use (`wasm_blas_matmul.ts`), in the BLAS's order of
 * additions (pretraining on the fixtures/base shape, one thread: 1,624 →
 * 1,800 tokens/s against the JS loop, 2026-12-04); without the library, by
 * {@link sumRowsInto}, which gives the stock kernel's bits. Other reductions,
 * and non-float32 inputs, go to the stock kernel.
 *
 * @module
 */
import { tf } from "./backend.ts";
import { asWasmBackend } from "./wasm_scope.ts";
import { libraryFor } from "../linalg/lapack_ffi.ts";

/** A ones vector, grown on demand, whose first n entries are `1ᵀ` of the sums. */
let ones = new Float32Array(0);

/** `[n]` ones (a view of {@link ones}). */
function onesOf(n: number): Float32Array {
  if (ones.length < n) ones = new Float32Array(n).fill(1);
  return ones.subarray(0, n);
}

/**
 * How many leading axes `axis` names when it is exactly `0, 1, …, k-1` (in
 * that order, negative axes counted from the end) of a rank-`rank` input,
 * else 0. Order matters: the stock kernel sums axes in the order given.
 */
function leadingAxes(axis: number | number[] | undefined, rank: number): number {
  if (axis === undefined || rank < 2) return 0;
  const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a));
  if (axes.length === 0 || axes.length === rank || axes.some((a, i) => a !== i)) return 0;
  return axes.length;
}

const f32 = Math.fround;

/**
 * `sums[c] = Σ_r values[r·cols + c]`, each column added in row order in
 * float32, as the stock kernel adds its transposed rows (a JS add of two
 * float32 values stored back into a Float32Array rounds exactly as a float32
 * add): its bits (test/tensor/wasm_leading_sum.test.ts). Four rows per pass
 * over `sums` (their adds rounded one by one, so the order and the bits are
 * those of one row at a time): a third faster. The route without OpenBLAS.
 */
export function sumRowsInto(values: Float32Array, rows: number, cols: number, sums: Float32Array): void {
  sums.fill(0);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const r0 = r * cols;
    const r1 = r0 + cols;
    const r2 = r1 + cols;
    const r3 = r2 + cols;
    for (let c = 0; c < cols; c++) {
      let s = sums[c];
      s = f32(s + values[r0 + c]);
      s = f32(s + values[r1 + c]);
      s = f32(s + values[r2 + c]);
      sums[c] = s + values[r3 + c];
    }
  }
  for (; r < rows; r++) {
    const r0 = r * cols;
    for (let c = 0; c < cols; c++) sums[c] += values[r0 + c];
  }
}

/** Wraps the stock wasm `Sum` kernel so sums over leading axes skip its transpose. */
export function fixLeadingSum(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const x = (inputs as { x: tf.TensorInfo }).x;
    const k = leadingAxes(attrs?.axis as number | number[] | undefined, x.shape.length);
    if (k === 0 || x.dtype !== "float32") return original(args);
    const wasm = asWasmBackend(backend);
    const kept = x.shape.slice(k);
    const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
    const cols = tf.util.sizeFromShape(kept);
    const outShape = attrs?.keepDims ? [...x.shape.slice(0, k).map(() => 1), ...kept] : kept;
    const out = wasm.makeOutput(outShape, "float32");
    const lib = libraryFor("Sum");
    const values = wasm.typedArrayFromHeap(x) as Float32Array; // [rows, cols]; views only after makeOutput
    const sums = wasm.typedArrayFromHeap(out) as Float32Array; // [cols]
    if (lib) lib.sgemm(false, false, 1, cols, rows, onesOf(rows), rows, values, cols, sums, cols); // [1, rows]·[rows, cols]
    else sumRowsInto(values, rows, cols, sums);
    return out;
  };
}
