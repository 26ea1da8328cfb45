/**
 * `sgemm` and `ssyrk` on an NVIDIA GPU through cuBLAS (docs/DISTRIBUTED.md
 * "A CUDA machine"), with the row-major signatures of `LinalgLibrary` in
 * `lapack_ffi.ts`, so the statistics' products and the tfjs BatchMatMul
 * kernel run there unchanged when `OFFTUNE_BLAS=cuda`.
 *
 * Each call copies its operands into device buffers that are kept and grown
 * (`device_buffers.ts`), runs cuBLAS, and copies the result back. Operands
 * are packed on the device (leading dimension = row length); strided host
 * operands move in one `cudaMemcpy2D` each. The math mode is
 * `CUBLAS_DEFAULT_MATH`: float32 products with float32 compute, no TF32, so
 * results match OpenBLAS to float32 rounding.
 *
 * Row-major to cuBLAS's column-major: a row-major m×n matrix is the
 * column-major n×m transpose, so `C = op(A)·op(B)` is computed as
 * `Cᵀ = op(B)ᵀ·op(A)ᵀ` with the operands swapped and the same transpose
 * flags; `ssyrk`'s row-major upper triangle is the column-major lower one.
 *
 * @module
 */
import { loadCuda } from "./cublas_ffi.ts";
import type { CudaSearchContext } from "./cuda_libraries.ts";
import { DeviceBuffers } from "./device_buffers.ts";
import type { LinalgLibrary } from "./lapack_ffi.ts";

/** The GPU routines and where their libraries were found. */
export interface CublasBlas extends Pick<LinalgLibrary, "sgemm" | "ssyrk"> {
  /** The libcudart and libcublas that were loaded. */
  paths: { cudart: string; cublas: string };
  /** Bytes of device memory held by the operand buffers. */
  deviceBytes(): number;
}

// cublas_api.h enumerations.
const CUBLAS_OP_N = 0;
const CUBLAS_OP_T = 1;
const CUBLAS_FILL_MODE_LOWER = 0;
const CUBLAS_DEFAULT_MATH = 0;

const SLOT_A = 0;
const SLOT_B = 1;
const SLOT_C = 2;
const FLOAT = 4;

/**
 * Loads CUDA's libraries (see `cuda_libraries.ts` for where), creates a
 * cuBLAS handle on the current device and returns the routines. Throws,
 * naming the library and the cause, when a library is missing or CUDA
 * reports an error (no device, out of memory).
 */
export function openCublas(ctx: CudaSearchContext): CublasBlas {
  const { routines: cuda, paths } = loadCuda(ctx);
  const check = (what: string, status: number, runtime: boolean) => {
    if (status !== 0) {
      const detail = runtime ? `${cuda.errorString(status)} (cudaError ${status})` : `cublasStatus ${status}`;
      throw new Error(`${runtime ? "CUDA runtime" : "cuBLAS"}: ${what} failed: ${detail}`);
    }
  };
  const out = new BigUint64Array(1);
  check("cublasCreate", cuda.create(out), false);
  const handle = out[0];
  check("cublasSetMathMode(CUBLAS_DEFAULT_MATH)", cuda.setMathMode(handle, CUBLAS_DEFAULT_MATH), false);
  const buffers = new DeviceBuffers(
    (bytes) => {
      const ptr = new BigUint64Array(1);
      check(`cudaMalloc of ${bytes} bytes`, cuda.malloc(ptr, bytes), true);
      return ptr[0];
    },
    (ptr) => check("cudaFree", cuda.free(ptr), true),
  );
  const alpha = new Float32Array([1]);
  const beta = new Float32Array(1);
  /** Copies a rows×cols row-major host operand (leading dimension ld) into slot, packed. */
  const upload = (slot: number, host: Float32Array, rows: number, cols: number, ld: number): bigint => {
    const dev = buffers.get(slot, rows * cols * FLOAT);
    check("cudaMemcpy2D to the device", cuda.toDevice(dev, cols * FLOAT, host, ld * FLOAT, cols * FLOAT, rows), true);
    return dev;
  };
  const download = (host: Float32Array, dev: bigint, rows: number, cols: number, ld: number) =>
    check("cudaMemcpy2D to the host", cuda.toHost(host, ld * FLOAT, dev, cols * FLOAT, cols * FLOAT, rows), true);
  return {
    paths,
    deviceBytes: () => buffers.heldBytes,
    sgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, betaValue = 0) {
      if (m === 0 || n === 0) return;
      const dA = upload(SLOT_A, a, transA ? k : m, transA ? m : k, lda);
      const dB = upload(SLOT_B, b, transB ? n : k, transB ? k : n, ldb);
      const dC = betaValue === 0 ? buffers.get(SLOT_C, m * n * FLOAT) : upload(SLOT_C, c, m, n, ldc);
      beta[0] = betaValue;
      check(
        `cublasSgemm (${m}×${n}×${k})`,
        cuda.sgemm(
          handle, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
          alpha, dB, transB ? k : n, dA, transA ? m : k, beta, dC, n,
        ),
        false,
      );
      download(c, dC, m, n, ldc);
    },
    ssyrk(n, k, a, lda, c, ldc, betaValue = 0) {
      if (n === 0) return;
      const dA = upload(SLOT_A, a, k, n, lda);
      // The whole of c goes up and comes back, so the triangle ssyrk leaves alone stays as it was.
      const dC = upload(SLOT_C, c, n, n, ldc);
      beta[0] = betaValue;
      check(
        `cublasSsyrk (${n}×${n} from ${k} rows)`,
        cuda.ssyrk(handle, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, alpha, dA, n, beta, dC, n),
        false,
      );
      download(c, dC, n, n, ldc);
    },
  };
}
