/**
 * Which BLAS runs the large float32 products (docs/DISTRIBUTED.md "A CUDA
 * machine"): `openblas`, the tested default, or `cuda` (cuBLAS on an NVIDIA
 * GPU, `src/linalg/cublas_blas.ts`). Set by `OFFTUNE_BLAS` or the CLI's
 * `--blas` flag, which sets that variable, so worker threads and child
 * processes make the same choice.
 *
 * @module
 */
import process from "node:process";

/** The BLAS implementations `OFFTUNE_BLAS` can name. */
export const BLAS_CHOICES = ["openblas", "cuda"] as const;

/** One of {@link BLAS_CHOICES}. */
export type BlasChoice = (typeof BLAS_CHOICES)[number];

/**
 * Parses a BLAS name (`undefined` or empty: the default, `openblas`); throws
 * naming `source` (the variable or flag it came from) and the known names
 * when it is none of them.
 */
export function parseBlasChoice(value: string | undefined, source = "OFFTUNE_BLAS"): BlasChoice {
  if (value === undefined || value === "") return "openblas";
  const name = value.trim().toLowerCase();
  if ((BLAS_CHOICES as readonly string[]).includes(name)) return name as BlasChoice;
  throw new Error(`${source}: unknown BLAS "${value}": expected ${BLAS_CHOICES.join(" or ")}`);
}

/** The BLAS this process was asked for, from `OFFTUNE_BLAS`. */
export function blasChoice(env: Record<string, string | undefined> = process.env): BlasChoice {
  return parseBlasChoice(env.OFFTUNE_BLAS);
}
