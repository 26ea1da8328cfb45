/**
 * Opening a shared library from a list of candidates, for the FFI layers
 * (`lapack_ffi.ts` for OpenBLAS and LAPACKE, `cublas_ffi.ts` for CUDA;
 * docs/DESIGN.md "Tensors").
 *
 * @module
 */

/**
 * `open` applied to the first of `candidates` it does not throw on; throws
 * naming every candidate and its error when none loads.
 */
export function firstLoadable<T>(candidates: string[], open: (path: string) => T): T {
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      return open(path);
    } catch (error) {
      failures.push(`${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new Error(`Cannot load any of ${candidates.join(", ")} (${failures.join("; ")})`);
}
