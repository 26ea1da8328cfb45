/**
 * `offtune bench pretrain`: how fast pretraining runs on this machine, as
 * tokens per second of full optimizer steps and as model FLOPs utilisation
 * (MFU): the `6 · N` FLOPs a token costs a model of `N` parameters (forward
 * 2N, backward 4N; attention's own `T`-dependent FLOPs left out, as usual)
 * against the OpenBLAS `sgemm` rate of one thread measured in the same run,
 * times the number of workers. Both figures come from one process, so the
 * ratio holds even when the shared machine is busy (fixtures/README.md
 * "base" quotes it).
 *
 * @module
 */
import { availableParallelism } from "node:os";
import type { BenchRow } from "./linalg.ts";
import { lapackAvailable, matmul } from "../linalg/gemm.ts";
import type { Matrix } from "../linalg/matrix.ts";
import { optConfigJson, type OptHyperParameters } from "../train/opt_config.ts";
import { Prng } from "../train/prng.ts";
import { measureThroughput } from "../train/throughput.ts";
import { fastest } from "./kernels.ts";

/** The shape `fixtures/base` is trained at (fixtures/README.md). */
export const BASE_SHAPE: OptHyperParameters = {
  layers: 16,
  hidden: 128,
  heads: 2,
  ffn: 512,
  maxPositions: 128,
  vocabSize: 6016,
  bosId: 2,
  eosId: 2,
  padId: 1,
};

/** What {@link benchPretrain} measures. */
export interface PretrainBenchOptions {
  /** The model shape (default {@link BASE_SHAPE}). */
  shape?: OptHyperParameters;
  /** Windows per step. */
  batch?: number;
  /** Rows per forward/backward pass in a worker. */
  microBatch?: number;
  /** Timed steps per worker count (after one warm-up step). */
  steps?: number;
  /** Worker counts to time (default 1 and every core). */
  workers?: number[];
  /** sgemm size for the peak rate (default 1024). */
  gemmSize?: number;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
}

/**
 * Model FLOPs utilisation: `6 · parameters · tokensPerSecond` over
 * `peakGflops · 1e9` (the peak of all the cores used).
 */
export function modelFlopsUtilisation(parameters: number, tokensPerSecond: number, peakGflops: number): number {
  if (!(peakGflops > 0)) throw new RangeError(`Peak rate must be positive, got ${peakGflops} GFLOP/s`);
  return (6 * parameters * tokensPerSecond) / (peakGflops * 1e9);
}

/**
 * One-thread OpenBLAS sgemm rate in GFLOP/s on an `n × n` product: the
 * fastest of 5 (a median of 3 once read 81 GFLOP/s against 117–122 in the
 * runs beside it).
 */
function sgemmGflops(n: number): number {
  const prng = new Prng(7);
  const random = (): Matrix => ({ rows: n, cols: n, data: Float32Array.from({ length: n * n }, () => prng.uniform() - 0.5) });
  const a = random();
  const b = random();
  matmul(a, b); // warm-up: loads the library and touches the pages
  return (2 * n ** 3) / 1e9 / fastest(5, () => matmul(a, b));
}

/** Times pretraining steps at each worker count and reports tokens/s and MFU (module doc). */
export async function benchPretrain(o: PretrainBenchOptions = {}): Promise<BenchRow[]> {
  if (!lapackAvailable()) throw new Error("bench pretrain needs OpenBLAS for its peak rate: apt-get install libopenblas0 liblapacke");
  const shape = o.shape ?? BASE_SHAPE;
  const batch = o.batch ?? 32;
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    o.onRow?.(row);
  };
  const cores = availableParallelism();
  const peak = sgemmGflops(o.gemmSize ?? 1024);
  emit({ name: `sgemm openblas ${o.gemmSize ?? 1024}, one thread`, value: peak, unit: "GFLOP/s", note: "peak per core" });
  const config = optConfigJson(shape, "float32");
  const shapeName = `${shape.layers}×${shape.hidden} ffn ${shape.ffn} ctx ${shape.maxPositions}`;
  let oneWorker: number | undefined;
  for (const workers of o.workers ?? [...new Set([1, cores])]) {
    const r = await measureThroughput({
      config,
      batch,
      ctx: shape.maxPositions,
      workers,
      microBatch: o.microBatch ?? 4,
      steps: o.steps ?? 4,
    });
    const note = `${shapeName}, ${(r.parameters / 1e6).toFixed(2)} M params, batch ${batch}, load ${r.load[0].toFixed(1)}→${r.load[1].toFixed(1)}`;
    emit({ name: `pretrain ${workers} worker${workers === 1 ? "" : "s"}`, value: r.tokensPerSecond, unit: "tokens/s", note });
    emit({
      name: `pretrain ${workers} worker${workers === 1 ? "" : "s"} MFU`,
      value: 100 * modelFlopsUtilisation(r.parameters, r.tokensPerSecond, peak * workers),
      unit: "%",
      note: `6·N·tokens/s over ${workers} × the sgemm peak above`,
    });
    if (workers === 1) oneWorker = r.tokensPerSecond;
    else if (oneWorker !== undefined) {
      emit({ name: `pretrain ${workers} workers speed-up`, value: r.tokensPerSecond / oneWorker, unit: "×", note: "against 1 worker, same run" });
    }
  }
  return rows;
}
