/**
 * The one place that loads CUDA's runtime and cuBLAS through a
 * foreign-function interface, as `lapack_ffi.ts` does for OpenBLAS
 * (docs/DISTRIBUTED.md "A CUDA machine"): `koffi` on Node, `Deno.dlopen` on
 * Deno. Device pointers and the cuBLAS handle travel as 64-bit integers
 * (bigint); host arrays are passed by pointer, uncopied, as in `lapack_ffi.ts`.
 *
 * Only what the GPU BLAS needs is bound: `cudaMalloc`, `cudaFree`,
 * `cudaMemcpy2D` (both directions, so strided host operands copy in one
 * call), `cudaGetErrorString`, `cublasCreate_v2`, `cublasSetMathMode`,
 * `cublasSgemm_v2` and `cublasSsyrk_v2` (column-major, host scalars).
 *
 * @module
 */
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { type CudaLibrary, cudaLibraryCandidates, type CudaSearchContext } from "./cuda_libraries.ts";
import { firstLoadable } from "./first_loadable.ts";

/** The bound CUDA routines; integer results are `cudaError_t` / `cublasStatus_t` (0 on success). */
export interface CudaRoutines {
  /** `cudaMalloc`: writes the device address into `out[0]`. */
  malloc(out: BigUint64Array, bytes: number): number;
  /** `cudaFree`. */
  free(ptr: bigint): number;
  /** `cudaMemcpy2D` host to device: `height` rows of `widthBytes`, pitches in bytes. */
  toDevice(dst: bigint, dpitch: number, src: Float32Array, spitch: number, widthBytes: number, height: number): number;
  /** `cudaMemcpy2D` device to host (synchronous with the default stream). */
  toHost(dst: Float32Array, dpitch: number, src: bigint, spitch: number, widthBytes: number, height: number): number;
  /** `cudaGetErrorString`. */
  errorString(code: number): string;
  /** `cublasCreate_v2`: writes the handle into `out[0]`. */
  create(out: BigUint64Array): number;
  /** `cublasSetMathMode`. */
  setMathMode(handle: bigint, mode: number): number;
  /** `cublasSgemm_v2`, column-major; `alpha`, `beta` are one-element host arrays. */
  sgemm(
    handle: bigint, transA: number, transB: number, m: number, n: number, k: number,
    alpha: Float32Array, a: bigint, lda: number, b: bigint, ldb: number, beta: Float32Array, c: bigint, ldc: number,
  ): number;
  /** `cublasSsyrk_v2`, column-major. */
  ssyrk(
    handle: bigint, uplo: number, trans: number, n: number, k: number,
    alpha: Float32Array, a: bigint, lda: number, beta: Float32Array, c: bigint, ldc: number,
  ): number;
}

/** The routines and the files they were loaded from. */
export interface LoadedCuda {
  routines: CudaRoutines;
  /** The paths (or sonames) that loaded, for the log line. */
  paths: { cudart: string; cublas: string };
}

/** `cudaMemcpyKind` values (driver_types.h). */
const HOST_TO_DEVICE = 1;
const DEVICE_TO_HOST = 2;

type Native = (...args: unknown[]) => unknown;

interface DenoFfi {
  dlopen(
    path: string,
    symbols: Record<string, { name?: string; parameters: string[]; result: string }>,
  ): { symbols: Record<string, Native> };
  UnsafePointerView: new (pointer: unknown) => { getCString(): string };
}

interface KoffiModule {
  load(path: string): { func(signature: string): Native };
}

/** Opens `library` at its first loadable candidate, or throws naming every place searched and path tried. */
function openCuda<T>(library: CudaLibrary, ctx: CudaSearchContext, open: (path: string) => T): { lib: T; path: string } {
  const { paths, searched } = cudaLibraryCandidates(library, ctx);
  try {
    return firstLoadable(paths, (path) => ({ lib: open(path), path }));
  } catch (error) {
    throw new Error(
      `cannot load CUDA's lib${library} (searched ${searched.join("; ")}): ${error instanceof Error ? error.message : String(error)}. ` +
        `Set OFFTUNE_CUDA_LIBS to the folder(s) holding libcudart.so.* and libcublas.so.*`,
    );
  }
}

/**
 * Loads libcudart and libcublas (libcublasLt first, from cuBLAS's folder, when
 * it is there) and binds {@link CudaRoutines}; throws, saying where it
 * looked, when either cannot be loaded.
 */
export function loadCuda(ctx: CudaSearchContext): LoadedCuda {
  return "Deno" in globalThis ? bindDeno(ctx) : bindKoffi(ctx);
}

/** Loads libcublasLt from the folder `cublasPath` came from, when it holds one: cuBLAS needs it and may not find it itself. */
function preloadLt(cublasPath: string, ctx: CudaSearchContext, open: (path: string) => unknown): void {
  if (!cublasPath.includes("/")) return; // found by the loader, which finds its dependencies too
  const folder = dirname(cublasPath);
  const lt = cudaLibraryCandidates("cublasLt", { ...ctx, env: { ...ctx.env, OFFTUNE_CUDA_LIBS: folder } }).paths
    .filter((p) => dirname(p) === folder);
  if (lt.length > 0) open(lt[0]);
}

function bindKoffi(ctx: CudaSearchContext): LoadedCuda {
  const koffi = createRequire(import.meta.url)("koffi") as KoffiModule;
  const cudart = openCuda("cudart", ctx, (path) => koffi.load(path));
  const cublas = openCuda("cublas", ctx, (path) => {
    preloadLt(path, ctx, (lt) => koffi.load(lt));
    return koffi.load(path);
  });
  const rt = cudart.lib;
  const blas = cublas.lib;
  const toDevice = rt.func(
    "int cudaMemcpy2D(uint64_t dst, size_t dpitch, const float *src, size_t spitch, size_t width, size_t height, int kind)",
  );
  const toHost = rt.func(
    "int cudaMemcpy2D(float *dst, size_t dpitch, uint64_t src, size_t spitch, size_t width, size_t height, int kind)",
  );
  const errorString = rt.func("const char *cudaGetErrorString(int error)");
  return {
    paths: { cudart: cudart.path, cublas: cublas.path },
    routines: bind({
      malloc: rt.func("int cudaMalloc(uint64_t *ptr, size_t size)"),
      free: rt.func("int cudaFree(uint64_t ptr)"),
      toDevice: (...args) => toDevice(...args, HOST_TO_DEVICE),
      toHost: (...args) => toHost(...args, DEVICE_TO_HOST),
      errorString: (code) => String(errorString(code)),
      create: blas.func("int cublasCreate_v2(uint64_t *handle)"),
      setMathMode: blas.func("int cublasSetMathMode(uint64_t handle, int mode)"),
      sgemm: blas.func(
        "int cublasSgemm_v2(uint64_t handle, int transa, int transb, int m, int n, int k, const float *alpha, " +
          "uint64_t a, int lda, uint64_t b, int ldb, const float *beta, uint64_t c, int ldc)",
      ),
      ssyrk: blas.func(
        "int cublasSsyrk_v2(uint64_t handle, int uplo, int trans, int n, int k, const float *alpha, " +
          "uint64_t a, int lda, const float *beta, uint64_t c, int ldc)",
      ),
    }),
  };
}

function bindDeno(ctx: CudaSearchContext): LoadedCuda {
  const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const copy = ["usize", "usize", "usize", "i32"]; // spitch or dpitch, width, height, kind
  const cudart = openCuda("cudart", ctx, (path) =>
    deno.dlopen(path, {
      cudaMalloc: { parameters: ["buffer", "usize"], result: "i32" },
      cudaFree: { parameters: ["u64"], result: "i32" },
      toDevice: { name: "cudaMemcpy2D", parameters: ["u64", "usize", "buffer", ...copy], result: "i32" },
      toHost: { name: "cudaMemcpy2D", parameters: ["buffer", "usize", "u64", ...copy], result: "i32" },
      cudaGetErrorString: { parameters: ["i32"], result: "pointer" },
    }).symbols);
  const cublas = openCuda("cublas", ctx, (path) => {
    preloadLt(path, ctx, (lt) => deno.dlopen(lt, {}));
    return deno.dlopen(path, {
      cublasCreate_v2: { parameters: ["buffer"], result: "i32" },
      cublasSetMathMode: { parameters: ["u64", "i32"], result: "i32" },
      cublasSgemm_v2: {
        parameters: ["u64", "i32", "i32", "i32", "i32", "i32", "buffer", "u64", "i32", "u64", "i32", "buffer", "u64", "i32"],
        result: "i32",
      },
      cublasSsyrk_v2: {
        parameters: ["u64", "i32", "i32", "i32", "i32", "buffer", "u64", "i32", "buffer", "u64", "i32"],
        result: "i32",
      },
    }).symbols;
  });
  const rt = cudart.lib;
  const blas = cublas.lib;
  return {
    paths: { cudart: cudart.path, cublas: cublas.path },
    routines: bind({
      malloc: rt.cudaMalloc,
      free: rt.cudaFree,
      toDevice: (...args) => rt.toDevice(...args, HOST_TO_DEVICE),
      toHost: (...args) => rt.toHost(...args, DEVICE_TO_HOST),
      errorString: (code) => new deno.UnsafePointerView(rt.cudaGetErrorString(code)).getCString(),
      create: blas.cublasCreate_v2,
      setMathMode: blas.cublasSetMathMode,
      sgemm: blas.cublasSgemm_v2,
      ssyrk: blas.cublasSsyrk_v2,
    }),
  };
}

/** Types the untyped natives as {@link CudaRoutines} (every one returns an int status but errorString). */
function bind(natives: Record<keyof CudaRoutines, Native>): CudaRoutines {
  return natives as unknown as CudaRoutines;
}
