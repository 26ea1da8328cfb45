/**
 * Puts the chosen BLAS behind `loadLinalgLibrary()` (docs/DISTRIBUTED.md "A
 * CUDA machine"): with `OFFTUNE_BLAS=cuda`, `sgemm` and `ssyrk` of at least
 * {@link GPU_MIN_MACS} multiply-adds run on cuBLAS (`cublas_blas.ts`) and the
 * rest, with SVD and eigh, stay on OpenBLAS and LAPACKE. Asking for cuda
 * where it cannot load is an error, never a silent fallback.
 *
 * @module
 */
import process from "node:process";
import { blasChoice } from "./blas_choice.ts";
import { type CublasBlas, openCublas } from "./cublas_blas.ts";
import { systemSearchContext } from "./cuda_libraries.ts";
import type { LinalgLibrary } from "./lapack_ffi.ts";

/**
 * Multiply-adds below which a product stays on OpenBLAS, where the copies and
 * the call overhead (about 70 µs for 128×128·128×128 on an H200) weigh as
 * much as the product (64 µs on 16 OpenBLAS threads there; docs/DISTRIBUTED.md
 * "A CUDA machine"); 2²⁴ leaves a margin of 8× that size.
 */
export const GPU_MIN_MACS = 1 << 24;

/** Whether an m×n×k product goes to the GPU. */
export function runsOnGpu(m: number, n: number, k: number): boolean {
  return m * n * k >= GPU_MIN_MACS;
}

/** The CPU libraries' load result, as `lapack_ffi.ts` keeps it. */
export interface LoadedLinalg {
  library?: LinalgLibrary;
  reason?: string;
}

/** {@link LoadedLinalg} with the chosen BLAS in place, or the error that asking for it raised. */
export interface SelectedLinalg extends LoadedLinalg {
  error?: Error;
}

let gpu: CublasBlas | undefined;

/** The process's cuBLAS routines, opened once (throws when CUDA cannot be loaded). */
export function cublasBlas(): CublasBlas {
  gpu ??= openCublas(systemSearchContext(process.env));
  return gpu;
}

/**
 * `cpu` unchanged under `OFFTUNE_BLAS=openblas` (the default); under `cuda`,
 * `cpu`'s library with large `sgemm`/`ssyrk` sent to `openGpu()` (default:
 * {@link cublasBlas}), or an error naming what is missing: the CUDA libraries,
 * or OpenBLAS and LAPACKE, which the GPU path still uses for SVD, eigh and
 * small products.
 */
export function withSelectedBlas(
  cpu: LoadedLinalg,
  env: Record<string, string | undefined> = process.env,
  openGpu: () => CublasBlas = cublasBlas,
): SelectedLinalg {
  let choice;
  try {
    choice = blasChoice(env);
  } catch (error) {
    return { error: error as Error };
  }
  if (choice === "openblas") return cpu;
  try {
    if (!cpu.library) {
      throw new Error(`the GPU path also needs OpenBLAS and LAPACKE (SVD, eigh, small products): ${cpu.reason}`);
    }
    const lib = cpu.library;
    const cuda = openGpu();
    return {
      library: {
        ...lib,
        sgemm: (transA, transB, m, n, k, ...rest) =>
          (runsOnGpu(m, n, k) ? cuda : lib).sgemm(transA, transB, m, n, k, ...rest),
        // ssyrk counted as the full n×n×k product it halves
        ssyrk: (n, k, ...rest) => (runsOnGpu(n, n, k) ? cuda : lib).ssyrk(n, k, ...rest),
      },
    };
  } catch (error) {
    return { error: new Error(`OFFTUNE_BLAS=${choice}: ${error instanceof Error ? error.message : String(error)}`) };
  }
}

