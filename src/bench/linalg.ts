/**
 * Linear-algebra benchmark (not a test): LAPACK SVD at model sizes, the
 * pure-TS fallback at small sizes (with an O(n³) estimate for 1024), LAPACK
 * eigh, and OpenBLAS `sgemm` against tfjs `matMul` in the same process, so
 * the DRD/KFAC cost on a machine can be judged before a run (docs/DESIGN.md
 * "Tensors" and "Scale"). A first row names the kernel OpenBLAS picked, since
 * a generic one makes every product several times slower
 * (docs/TROUBLESHOOTING.md "OpenBLAS picked a generic kernel"). The `bench`
 * CLI verb prints its rows.
 *
 * @module
 */
import process from "node:process";
import { currentBackend, initBackend, tf } from "../tensor/backend.ts";
import { eigh } from "../linalg/eigh.ts";
import { lapackAvailable, matmul } from "../linalg/gemm.ts";
import { matmulJs } from "../linalg/gemm_js.ts";
import { linalgUnavailableReason, openblasCorename } from "../linalg/lapack_ffi.ts";
import type { Matrix } from "../linalg/matrix.ts";
import { svd } from "../linalg/svd.ts";

/** One measured (or estimated) figure. */
export interface BenchRow {
  /** What was measured. */
  name: string;
  /** The figure. */
  value: number;
  /** Its unit (s, MiB, GFLOP/s, x for a ratio). */
  unit: string;
  /** The baseline or conditions it is quoted against. */
  note?: string;
}

/**
 * The row naming the OpenBLAS kernel in use (`openblas_get_corename`) and who
 * chose it: the environment's `OPENBLAS_CORETYPE` or OpenBLAS itself. Every
 * product's speed, and its rounding, depends on it (docs/TROUBLESHOOTING.md
 * "OpenBLAS picked a generic kernel"). Loads the libraries.
 */
export function openblasKernelRow(): BenchRow {
  const native = lapackAvailable();
  const corename = native ? openblasCorename() : undefined;
  return {
    name: "openblas kernel",
    value: 0,
    unit: "",
    note: corename === undefined
      ? `unknown: ${native ? "the BLAS loaded has no openblas_get_corename" : linalgUnavailableReason()}`
      : process.env.OPENBLAS_CORETYPE
      ? `${corename}, as OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} asks`
      : `${corename}, picked by OpenBLAS for this CPU`,
  };
}

/** Options of {@link benchLinalg}; every size is a square n×n problem. */
export interface LinalgBenchOptions {
  /** LAPACK SVD sizes (default 1024, 2048). */
  lapackSizes?: number[];
  /** Pure-TS SVD sizes (default 256, 512); the largest one also gives the 1024 estimate. */
  jsSizes?: number[];
  /** LAPACK eigh sizes (default 1024). */
  eighSizes?: number[];
  /** sgemm and tfjs matMul size (default 1024). */
  gemmSize?: number;
  /** Pure-TS matmul size (default 512). */
  gemmJsSize?: number;
  /** Timed repetitions of each product, the median is reported (default 3). */
  repeats?: number;
  /** tfjs backend for the matMul comparison (default: the one already started, else auto). */
  tfBackend?: string;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
}

/**
 * Runs the benchmark and returns its rows: the OpenBLAS kernel, seconds per
 * SVD/eigh, GFLOP/s per product (2n³ flops). LAPACK rows are left out, with one row saying why,
 * when the libraries are not loaded.
 */
export async function benchLinalg(opts: LinalgBenchOptions = {}): Promise<BenchRow[]> {
  const lapackSizes = sizes(opts.lapackSizes ?? [1024, 2048], "lapackSizes");
  const jsSizes = sizes(opts.jsSizes ?? [256, 512], "jsSizes");
  const eighSizes = sizes(opts.eighSizes ?? [1024], "eighSizes");
  const [gemmSize] = sizes([opts.gemmSize ?? 1024], "gemmSize");
  const [gemmJsSize] = sizes([opts.gemmJsSize ?? 512], "gemmJsSize");
  const [repeats] = sizes([opts.repeats ?? 3], "repeats");
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    opts.onRow?.(row);
  };
  const native = lapackAvailable(); // loads the libraries, which sets the thread default
  const threads = `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? "unset"}`;

  if (native) {
    emit(openblasKernelRow());
    for (const n of lapackSizes) {
      const a = randomSquare(n);
      emit({ name: `svd lapack ${n}×${n}`, value: seconds(() => svd(a)), unit: "s", note: `sgesdd, thin, ${threads}` });
    }
    for (const n of eighSizes) {
      const a = randomSymmetric(n);
      emit({ name: `eigh lapack ${n}×${n}`, value: seconds(() => eigh(a)), unit: "s", note: `ssyevd, ${threads}` });
    }
  } else {
    emit({ name: "lapack", value: 0, unit: "", note: `skipped: ${linalgUnavailableReason()}` });
  }

  let largestJs: { n: number; s: number } | undefined;
  for (const n of jsSizes) {
    const a = randomSquare(n);
    const s = seconds(() => svd(a, { backend: "js" }));
    emit({ name: `svd js ${n}×${n}`, value: s, unit: "s", note: "one-sided Jacobi, float64" });
    if (!largestJs || n > largestJs.n) largestJs = { n, s };
  }
  if (largestJs && largestJs.n < 1024) {
    emit({
      name: "svd js 1024×1024",
      value: largestJs.s * (1024 / largestJs.n) ** 3,
      unit: "s",
      note: `estimate: ${largestJs.n}×${largestJs.n} time × (1024/${largestJs.n})³; sweeps grow slowly too`,
    });
  }

  const flops = (n: number) => (2 * n ** 3) / 1e9;
  if (native) {
    const a = randomSquare(gemmSize);
    const b = randomSquare(gemmSize);
    const s = median(repeats, () => seconds(() => matmul(a, b)));
    emit({ name: `sgemm openblas ${gemmSize}`, value: flops(gemmSize) / s, unit: "GFLOP/s", note: threads });
  }
  {
    const a = randomSquare(gemmJsSize);
    const b = randomSquare(gemmJsSize);
    const s = seconds(() => matmulJs(a, b, false, false));
    emit({ name: `matmul js ${gemmJsSize}`, value: flops(gemmJsSize) / s, unit: "GFLOP/s", note: "float64 accumulation" });
  }
  const backend = opts.tfBackend === undefined
    ? currentBackend() ?? await initBackend(undefined, true)
    : await initBackend(opts.tfBackend, true);
  const s = tf.tidy(() => {
    const a = tf.randomUniform([gemmSize, gemmSize], -1, 1); // [n, n]
    const b = tf.randomUniform([gemmSize, gemmSize], -1, 1); // [n, n]
    tf.matMul(a, b).dataSync(); // warm-up: kernel compile and allocation
    return median(repeats, () => seconds(() => tf.tidy(() => tf.matMul(a, b).dataSync())));
  });
  emit({
    name: `tfjs ${backend} matMul ${gemmSize}`,
    value: flops(gemmSize) / s,
    unit: "GFLOP/s",
    note: "includes dataSync readback",
  });
  return rows;
}

function sizes(values: number[], what: string): number[] {
  for (const n of values) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`benchLinalg: ${what} has ${n}: expected positive integers`);
  }
  return values;
}

/** Wall-clock seconds of one call of `run` (also used by `blas.ts`). */
export function seconds(run: () => unknown): number {
  const start = performance.now();
  run();
  return (performance.now() - start) / 1000;
}

/** The median of `count` measurements. */
export function median(count: number, measure: () => number): number {
  const times = Array.from({ length: count }, measure).sort((x, y) => x - y);
  return times[Math.floor(count / 2)];
}

function randomSquare(n: number): Matrix {
  return { rows: n, cols: n, data: Float32Array.from({ length: n * n }, () => Math.random() * 2 - 1) };
}

function randomSymmetric(n: number): Matrix {
  const a = randomSquare(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a.data[i * n + j] = a.data[j * n + i];
  return a;
}
