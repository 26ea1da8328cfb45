/**
 * Matrix-product benchmark of the wasm kernel fixes (not a test): GFLOP/s of
 * the plain `matMul` and of each transposed form, through the fixed kernel
 * and through the stock wasm kernel it wraps, at transformer shapes
 * (docs/DESIGN.md "Tensors"). The backward pass of every linear layer is one
 * `dy·Wᵀ` and one `xᵀ·dy`, so the transposed rows are what training costs.
 *
 * @module
 */
import type { BenchRow } from "./linalg.ts";
import { currentBackend, initBackend, tf } from "../tensor/backend.ts";
import { originalWasmKernel } from "../tensor/wasm_kernels.ts";

/** One product `[m, k]·[k, n]` to time, named for the report. */
export interface MatmulBenchShape {
  /** The row's name. */
  name: string;
  /** Rows of the left factor. */
  m: number;
  /** The shared dimension. */
  k: number;
  /** Columns of the right factor. */
  n: number;
}

/** Options of {@link benchMatmul}. */
export interface MatmulBenchOptions {
  /** Products to time (default: GPT-2-small projections and a weight gradient at 2048 tokens). */
  shapes?: MatmulBenchShape[];
  /** Timed runs of each fixed product, the fastest is reported (default 3). */
  repeats?: number;
  /**
   * Timed runs of each stock transposed product (default 1; 0 leaves the
   * stock rows out). They are 10-90x slower: minutes at the default shapes.
   */
  stockRepeats?: number;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
}

/** GPT-2-small shapes at 2048 tokens: q/k/v/o projection, MLP up-projection, MLP weight gradient. */
export const TRANSFORMER_MATMUL_SHAPES: readonly MatmulBenchShape[] = [
  { name: "x·W 2048×768·768×768", m: 2048, k: 768, n: 768 },
  { name: "x·W 2048×768·768×3072", m: 2048, k: 768, n: 3072 },
  { name: "xᵀ·γ 768×2048·2048×3072", m: 768, k: 2048, n: 3072 },
];

const variants: Array<[string, boolean, boolean]> = [
  ["NN", false, false],
  ["NT", false, true],
  ["TN", true, false],
  ["TT", true, true],
];

function atLeast(min: number, value: number, what: string): number {
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`benchMatmul: ${what} is ${value}: expected an integer of at least ${min}`);
  }
  return value;
}

/**
 * Fastest of `runs` timings of `run`, in seconds: a peak rate is the best the
 * core reaches, and a slower run only says something else ran.
 */
export function fastest(runs: number, run: () => void): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    run();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

/**
 * Times every shape in the four transpose variants. Rows: `NN` (plain) once;
 * `NT`, `TN`, `TT` through the fix and through the stock kernel, the fixed
 * row's note giving the speed-up. Needs the wasm backend (a single skip row
 * otherwise); switches tfjs to it for the run and back afterwards.
 */
export async function benchMatmul(opts: MatmulBenchOptions = {}): Promise<BenchRow[]> {
  const shapes = opts.shapes ?? TRANSFORMER_MATMUL_SHAPES;
  const repeats = atLeast(1, opts.repeats ?? 3, "repeats");
  const stockRepeats = atLeast(0, opts.stockRepeats ?? 1, "stockRepeats");
  for (const s of shapes) for (const d of [s.m, s.k, s.n]) atLeast(1, d, `a dimension of "${s.name}"`);
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    opts.onRow?.(row);
  };
  const backend = currentBackend() ?? (await initBackend(undefined, true));
  const stock = originalWasmKernel("BatchMatMul");
  if (backend !== "wasm" || !stock) {
    emit({ name: "wasm matMul", value: 0, unit: "", note: `skipped: the tensor backend is ${backend}, not wasm` });
    return rows;
  }
  const active = tf.getBackend();
  await tf.setBackend("wasm");
  try {
    for (const { name, m, k, n } of shapes) {
      const gflop = (2 * m * k * n) / 1e9;
      for (const [variant, tA, tB] of variants) {
        const a = tf.randomUniform(tA ? [k, m] : [m, k], -1, 1);
        const b = tf.randomUniform(tB ? [n, k] : [k, n], -1, 1);
        try {
          const fixedRun = () => tf.matMul(a, b, tA, tB).dispose();
          fixedRun(); // warm-up: heap growth
          const fixed = gflop / fastest(repeats, fixedRun);
          if (variant === "NN") {
            emit({
              name: `wasm matMul NN ${name}`,
              value: fixed,
              unit: "GFLOP/s",
              note: "plain product (the fix passes it through)",
            });
            continue;
          }
          if (stockRepeats === 0) {
            emit({
              name: `wasm matMul ${variant} ${name} fixed`,
              value: fixed,
              unit: "GFLOP/s",
              note: "stock kernel not timed",
            });
            continue;
          }
          const stockRun = () => {
            const out = stock({ inputs: { a, b }, backend: tf.backend(), attrs: { transposeA: tA, transposeB: tB } });
            tf.backend().disposeData((out as tf.TensorInfo).dataId);
          };
          const slow = gflop / fastest(stockRepeats, stockRun);
          emit({
            name: `wasm matMul ${variant} ${name} fixed`,
            value: fixed,
            unit: "GFLOP/s",
            note: `${(fixed / slow).toFixed(1)}x the stock kernel`,
          });
          emit({
            name: `wasm matMul ${variant} ${name} stock`,
            value: slow,
            unit: "GFLOP/s",
            note: "tfjs-backend-wasm 4.22 BatchMatMul",
          });
        } finally {
          a.dispose();
          b.dispose();
        }
      }
    }
  } finally {
    if (active !== "wasm") await tf.setBackend(active);
  }
  return rows;
}
