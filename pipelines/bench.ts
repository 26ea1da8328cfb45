/**
 * `offtune bench [suite...]`: benchmarks, never tests (figures are ratios
 * against a baseline measured in the same run). Suites: `kernels` (wasm
 * matmul fixes), `linalg` (LAPACK SVD/eigh, OpenBLAS sgemm), `model` (OPT
 * block stack forward+backward, wasm vs cpu, matmul efficiency), `gradot`
 * (emulator build: seconds per stage, peak RSS), `pretrain` (pretraining
 * tokens/s and MFU on the fixtures/base shape), `blas` (cuBLAS against
 * OpenBLAS on a CUDA machine), and, only when named, `scale` (GradOT builds
 * at LLaMA-7B and OPT-1.3B shape: peak RSS across depth, seconds per block,
 * the projection to 2,048 calibration tokens; docs/GRADOT.md "7B shape").
 *
 * @module
 */
import { parseArgs } from "node:util";
import { benchBlas, benchBlockStack, benchGradot, benchLinalg, benchMatmul, benchPretrain, type BenchRow, benchScale, writeFileAtomic } from "../mod.ts";
import { positiveIntFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune bench [kernels|linalg|model|gradot|pretrain|blas|scale|all]... [--json <file>] [--quick]

Runs benchmarks and prints one row per figure. Figures that are compared
(speed-ups, efficiencies) are measured against their baseline in the same
run. Default suite: kernels linalg model.

  kernels   wasm matMul GFLOP/s, plain vs transposed (fixed and stock kernels)
  linalg    the OpenBLAS kernel, SVD 1024/2048 and eigh (LAPACK), JS fallback,
            sgemm vs wasm matMul
  model     OPT-125M-shaped block stack forward+backward tokens/s, wasm vs cpu;
            matmul-kernel GFLOP/s vs plain matMul (target >= 70%)
  gradot    GradOT emulator build (fixtures/small, OPT-125M- and OPT-1.3B-shaped
            random checkpoints): the OpenBLAS kernel, seconds per stage and peak
            RSS on one core (target < 1.5 GB), then the same build with
            --workers 2 on two cores: the two cores / one core speed-up (target
            >= 1.7x; also against --workers 1 unpinned) and its peak RSS; each
            build pinned with taskset where it can be
  pretrain  pretraining steps of the fixtures/base shape (16 blocks, width 128)
            on 1 worker and on every core: tokens/s, speed-up, and MFU (6 · params
            · tokens/s against the one-thread OpenBLAS sgemm rate measured in the
            same run, times the workers)
  blas      cuBLAS vs OpenBLAS in one process (a CUDA machine): largest
            difference on random operands, then seconds at GradOT's shapes
            (LM head, fc2, KFAC Gram), GPU times with their copies; OpenBLAS
            on OPENBLAS_NUM_THREADS threads (docs/DISTRIBUTED.md)
  scale     (only when named; not in all) GradOT builds from random fp16
            checkpoints of LLaMA-7B shape (13.5 GB in HF shards + index.json)
            and OPT-1.3B shape, with a short calibration: peak RSS (target
            <= 4 GB for 7B), RSS after the first and the last middle block,
            seconds per middle block by stage, and those projected to 2,048
            calibration tokens (forward, backward, KFAC, head scaled; the
            rest as measured). About an hour on one core; needs about 37 GB
            free under --dir; deletes what it wrote (docs/GRADOT.md "7B shape")
  --json <file>  also write the rows as JSON
  --quick        smaller shapes (for a smoke run)
  --dir <dir>    scale: where its temporary directory goes (default the OS's)
  --sequences <n>, --length <t>
                 scale: calibration sequences and tokens each (default 2 x 128)
  --quiet        scale: no progress lines (stderr)
  --no-large     gradot: skip the OPT-1.3B shape (2.6 GB on disk, the longest build)`;

/** What a suite may take besides --quick: the scale suite's flags and progress sink. */
interface SuiteContext {
  /** gradot: also build the OPT-1.3B shape (`--no-large` clears it). */
  large: boolean;
  dir?: string;
  sequences?: number;
  length?: number;
  progress?: (line: string) => void;
}

type Suite = (quick: boolean, onRow: (row: BenchRow) => void, context: SuiteContext) => Promise<BenchRow[]>;

/** Suites that run only when named (`all` leaves them out): they write GBs and take an hour. */
const NAMED_ONLY = new Set(["scale"]);

const suites: Record<string, Suite> = {
  kernels: async (quick, onRow) => {
    return benchMatmul({ onRow, ...(quick ? { shapes: [{ name: "x·W 256×256·256×512", m: 256, k: 256, n: 512 }] } : {}) });
  },
  linalg: async (quick, onRow) => {
    return benchLinalg({
      onRow,
      ...(quick ? { lapackSizes: [256], jsSizes: [64], eighSizes: [256], gemmSize: 256, gemmJsSize: 128 } : {}),
    });
  },
  gradot: async (quick, onRow, context) => {
    return benchGradot({ onRow, quick, large: context.large });
  },
  pretrain: async (quick, onRow) => {
    return benchPretrain({ onRow, ...(quick ? { batch: 8, steps: 1, gemmSize: 256 } : {}) });
  },
  scale: async (quick, onRow, context) => {
    return benchScale({ onRow, quick, dir: context.dir, sequences: context.sequences, length: context.length, onProgress: context.progress });
  },
  blas: async (quick, onRow) => {
    return benchBlas({ onRow, ...(quick ? { shapes: [{ name: "256×256 · 256×256", op: "sgemm", m: 256, n: 256, k: 256 }], repeats: 1 } : {}) });
  },
  model: async (quick, onRow) => {
    return benchBlockStack({ onRow, ...(quick ? { hidden: 128, heads: 4, ffn: 512, tokens: 32, repeats: 1 } : {}) });
  },
};

function formatRow(row: BenchRow): string {
  const value = row.value >= 100 ? row.value.toFixed(0) : row.value.toPrecision(3);
  return `${row.name.padEnd(58)} ${value.padStart(10)} ${row.unit}${row.note ? `   (${row.note})` : ""}`;
}

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "string" },
      quick: { type: "boolean", default: false },
      dir: { type: "string" },
      sequences: { type: "string" },
      length: { type: "string" },
      quiet: { type: "boolean", default: false },
      "no-large": { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const names = positionals.length === 0 ? ["kernels", "linalg", "model"] : positionals.includes("all") ? Object.keys(suites).filter((s) => !NAMED_ONLY.has(s)) : positionals;
  for (const name of names) {
    if (!suites[name]) throw new Error(`Unknown bench suite "${name}": expected one of ${Object.keys(suites).join(", ")}, all`);
  }
  const context: SuiteContext = {
    large: !values["no-large"],
    dir: values.dir,
    sequences: positiveIntFlag(values.sequences, "sequences"),
    length: positiveIntFlag(values.length, "length"),
    progress: values.quiet ? undefined : (line) => console.error(line),
  };
  const all: Array<BenchRow & { suite: string }> = [];
  for (const name of names) {
    console.log(`# ${name}`);
    await suites[name](values.quick, (row) => {
      all.push({ ...row, suite: name });
      console.log(formatRow(row));
    }, context);
  }
  if (values.json) await writeFileAtomic(values.json, new TextEncoder().encode(JSON.stringify(all, null, 2) + "\n"));
  return 0;
}
