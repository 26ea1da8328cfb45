/**
 * The log line naming the BLAS a run uses (docs/DISTRIBUTED.md "A CUDA
 * machine"), printed by the CLI once at start.
 *
 * @module
 */
import process from "node:process";
import { blasChoice } from "./blas_choice.ts";
import { cublasBlas, GPU_MIN_MACS } from "./blas_select.ts";
import { loadLinalgLibrary } from "./lapack_ffi.ts";

/**
 * Loads the chosen BLAS (so a missing CUDA fails here, before any work, with
 * the error of `blas_select.ts`) and returns one line saying what runs the
 * products and from which files; undefined under the default OpenBLAS.
 */
export function selectedBlasSummary(env: Record<string, string | undefined> = process.env): string | undefined {
  if (blasChoice(env) === "openblas") return undefined;
  loadLinalgLibrary();
  const { cudart, cublas } = cublasBlas().paths;
  return `BLAS: cuBLAS for products of at least 2^${Math.log2(GPU_MIN_MACS)} multiply-adds (${cublas}, ${cudart}), OpenBLAS below`;
}
