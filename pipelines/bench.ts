/**
 * `offtune bench [suite...]`: benchmarks, never tests (figures are ratios
 * against a baseline measured in the same run). Suites: `kernels` (wasm
 * matmul fixes), `linalg` (LAPACK SVD/eigh, OpenBLAS sgemm), `model` (OPT
 * block stack forward+backward, wasm vs cpu, matmul efficiency), `gradot`
 * (emulator build: seconds per stage, peak RSS), `pretrain` (pretraining
 * tokens/s and MFU on the fixtures/base shape).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { benchBlockStack, benchGradot, benchLinalg, benchMatmul, benchPretrain, type BenchRow } from "../mod.ts";

/** Help text for the verb. */
export const help = `offtune bench [kernels|linalg|model|gradot|pretrain|all]... [--json <file>] [--quick]

Runs benchmarks and prints one row per figure. Figures that are compared
(speed-ups, efficiencies) are measured against their baseline in the same
run. Default suite: kernels linalg model.

  kernels   wasm matMul GFLOP/s, plain vs transposed (fixed and stock kernels)
  linalg    SVD 1024/2048 and eigh (LAPACK), JS fallback, sgemm vs wasm matMul
  model     OPT-125M-shaped block stack forward+backward tokens/s, wasm vs cpu;
            matmul-kernel GFLOP/s vs plain matMul (target >= 70%)
  gradot    GradOT emulator build (fixtures/small, OPT-125M- and OPT-1.3B-shaped
            random checkpoints): seconds per stage and peak RSS on one thread
            (target < 1.5 GB), then the same build with --workers 2: the
            2 workers / 1 worker speed-up (target >= 1.7x) and its peak RSS
  pretrain  pretraining steps of the fixtures/base shape (16 blocks, width 128)
            on 1 worker and on every core: tokens/s, speed-up, and MFU (6 · params
            · tokens/s against the one-thread OpenBLAS sgemm rate measured in the
            same run, times the workers)
  --json <file>  also write the rows as JSON
  --quick        smaller shapes (for a smoke run)
  --no-large     gradot: skip the OPT-1.3B shape (2.6 GB on disk, the longest build)`;

type Suite = (quick: boolean, onRow: (row: BenchRow) => void, large: boolean) => Promise<BenchRow[]>;

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
  gradot: async (quick, onRow, large) => {
    return benchGradot({ onRow, quick, large });
  },
  pretrain: async (quick, onRow) => {
    return benchPretrain({ onRow, ...(quick ? { batch: 8, steps: 1, gemmSize: 256 } : {}) });
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
    options: { json: { type: "string" }, quick: { type: "boolean", default: false }, "no-large": { type: "boolean", default: false } },
    allowPositionals: true,
  });
  const names = positionals.length === 0 ? ["kernels", "linalg", "model"] : positionals.includes("all") ? Object.keys(suites) : positionals;
  for (const name of names) {
    if (!suites[name]) throw new Error(`Unknown bench suite "${name}": expected one of ${Object.keys(suites).join(", ")}, all`);
  }
  const all: Array<BenchRow & { suite: string }> = [];
  for (const name of names) {
    console.log(`# ${name}`);
    await suites[name](values.quick, (row) => {
      all.push({ ...row, suite: name });
      console.log(formatRow(row));
    }, !values["no-large"]);
  }
  if (values.json) {
    const { writeFile } = await import("node:fs/promises");
    await writeFile(values.json, JSON.stringify(all, null, 2) + "\n");
  }
  return 0;
}
