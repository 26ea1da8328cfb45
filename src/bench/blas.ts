/**
 * `offtune bench blas`: cuBLAS against OpenBLAS in the same process
 * (docs/DISTRIBUTED.md "A CUDA machine"), so a GPU machine's `OFFTUNE_BLAS=cuda`
 * can be judged before a run: the largest difference between the two on
 * random operands (all four transposes of sgemm, and ssyrk), then seconds and
 * GFLOP/s at GradOT's shapes. GPU times include the host-device copies of
 * every call, as the products in a run pay them. OpenBLAS runs on
 * `OPENBLAS_NUM_THREADS` threads (1 unless set).
 *
 * @module
 */
import process from "node:process";
import { cublasBlas } from "../linalg/blas_select.ts";
import { type LinalgLibrary, loadCpuLinalgLibrary } from "../linalg/lapack_ffi.ts";
import { type BenchRow, median, seconds } from "./linalg.ts";

/** One timed product: sgemm `op(A)·op(B)` (m×k·k×n) or ssyrk (n×n Gram of k rows). */
export interface BlasBenchShape {
  /** The row's label. */
  name: string;
  /** The routine timed. */
  op: "sgemm" | "ssyrk";
  /** Rows of op(A) and C (sgemm; ssyrk ignores it). */
  m: number;
  /** Columns of op(B) and C; ssyrk: the Gram matrix's side. */
  n: number;
  /** The inner dimension; ssyrk: the rows summed over. */
  k: number;
  /** sgemm's B is stored n×k (the head's `x·Wᵀ`, a linear layer's weight). */
  transB?: boolean;
}

/** GradOT's large products on the OPT-125M shape, and two smaller ones near the GPU threshold. */
export const BLAS_BENCH_SHAPES: BlasBenchShape[] = [
  { name: "LM head x·Wᵀ 2048×768 · 768×50272", op: "sgemm", m: 2048, n: 50272, k: 768, transB: true },
  { name: "fc2 512×3072 · 3072×768", op: "sgemm", m: 512, n: 768, k: 3072 },
  { name: "KFAC Gram 3072×3072 from 2048 rows (ssyrk)", op: "ssyrk", m: 3072, n: 3072, k: 2048 },
  { name: "q-proj 512×768 · 768×768", op: "sgemm", m: 512, n: 768, k: 768 },
  { name: "small 128×128 · 128×128", op: "sgemm", m: 128, n: 128, k: 128 },
];

/** Options of {@link benchBlas}. */
export interface BlasBenchOptions {
  /** Shapes to time (default {@link BLAS_BENCH_SHAPES}). */
  shapes?: BlasBenchShape[];
  /** Timed repetitions after one warm-up; the median is reported (default 3). */
  repeats?: number;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
}

/** Largest |x − y| over the largest |y|: the error of `x` relative to the scale of the reference `y`. */
export function relativeMaxError(x: Float32Array, y: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    diff = Math.max(diff, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return diff / scale;
}

const random = (length: number) => Float32Array.from({ length }, () => Math.random() * 2 - 1);

type Blas = Pick<LinalgLibrary, "sgemm" | "ssyrk">;

/** Runs `shape` once on `lib` into `c` (c's shape: m×n for sgemm, n×n for ssyrk). */
function runShape(lib: Blas, s: BlasBenchShape, a: Float32Array, b: Float32Array, c: Float32Array): void {
  if (s.op === "ssyrk") lib.ssyrk(s.n, s.k, a, s.n, c, s.n);
  else lib.sgemm(false, !!s.transB, s.m, s.n, s.k, a, s.k, b, s.transB ? s.k : s.n, c, s.n);
}

/**
 * Runs the benchmark and returns its rows; one row saying why, and nothing
 * else, when cuBLAS or OpenBLAS cannot be loaded.
 */
export function benchBlas(opts: BlasBenchOptions = {}): BenchRow[] {
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    opts.onRow?.(row);
  };
  const cpu = loadCpuLinalgLibrary();
  if (!cpu.library) {
    emit({ name: "blas", value: 0, unit: "", note: `skipped: OpenBLAS is not loaded: ${cpu.reason}` });
    return rows;
  }
  let gpu: ReturnType<typeof cublasBlas>;
  try {
    gpu = cublasBlas();
  } catch (error) {
    emit({ name: "blas", value: 0, unit: "", note: `skipped: ${error instanceof Error ? error.message : String(error)}` });
    return rows;
  }
  const openblas = cpu.library;
  const threads = `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? "unset"}`;
  emit({ name: "cuBLAS loaded", value: 0, unit: "", note: `${gpu.paths.cublas}, ${gpu.paths.cudart}` });

  // Accuracy: odd sizes, every transpose, beta 0; ssyrk's upper triangle only (the lower is left alone by both).
  const [m, n, k] = [1001, 703, 897];
  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
    const a = random(m * k);
    const b = random(k * n);
    const ref = new Float32Array(m * n);
    const out = new Float32Array(m * n);
    openblas.sgemm(transA, transB, m, n, k, a, transA ? m : k, b, transB ? k : n, ref, n);
    gpu.sgemm(transA, transB, m, n, k, a, transA ? m : k, b, transB ? k : n, out, n);
    emit({
      name: `sgemm ${transA ? "T" : "N"}${transB ? "T" : "N"} ${m}×${k}·${k}×${n}: cuBLAS vs OpenBLAS`,
      value: relativeMaxError(out, ref),
      unit: "max |Δ| / max |C|",
    });
  }
  {
    const [gn, gk] = [1024, 2048];
    const a = random(gk * gn);
    const ref = new Float32Array(gn * gn);
    const out = new Float32Array(gn * gn);
    openblas.ssyrk(gn, gk, a, gn, ref, gn);
    gpu.ssyrk(gn, gk, a, gn, out, gn);
    for (let i = 0; i < gn; i++) for (let j = 0; j < i; j++) ref[i * gn + j] = out[i * gn + j] = 0;
    emit({ name: `ssyrk ${gn}×${gn} from ${gk} rows: cuBLAS vs OpenBLAS`, value: relativeMaxError(out, ref), unit: "max |Δ| / max |C|" });
  }

  const repeats = opts.repeats ?? 3;
  for (const s of opts.shapes ?? BLAS_BENCH_SHAPES) {
    const a = random(s.op === "ssyrk" ? s.k * s.n : s.m * s.k);
    const b = s.op === "ssyrk" ? a : random(s.k * s.n);
    const c = new Float32Array(s.op === "ssyrk" ? s.n * s.n : s.m * s.n);
    const gflop = (s.op === "ssyrk" ? s.n * s.n * s.k : 2 * s.m * s.n * s.k) / 1e9;
    const time = (lib: Blas) => {
      runShape(lib, s, a, b, c); // warm-up: buffers, library start
      return median(repeats, () => seconds(() => runShape(lib, s, a, b, c)));
    };
    const tGpu = time(gpu);
    const tCpu = time(openblas);
    emit({ name: `${s.name}: cuBLAS`, value: tGpu, unit: "s", note: `${(gflop / tGpu).toFixed(0)} GFLOP/s with the copies` });
    emit({ name: `${s.name}: OpenBLAS`, value: tCpu, unit: "s", note: `${(gflop / tCpu).toFixed(0)} GFLOP/s, ${threads}` });
    emit({ name: `${s.name}: OpenBLAS time / cuBLAS time`, value: tCpu / tGpu, unit: "x" });
  }
  emit({ name: "cuBLAS device buffers held", value: gpu.deviceBytes() / 2 ** 20, unit: "MiB" });
  return rows;
}
