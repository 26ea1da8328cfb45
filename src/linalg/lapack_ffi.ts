/**
 * The one place that loads LAPACKE and CBLAS through a foreign-function
 * interface (docs/DESIGN.md "Tensors": LAPACK through FFI on both runtimes).
 *
 * - Deno: `Deno.dlopen` (needs `--allow-ffi`, implied by `-A`).
 * - Node: the `koffi` package.
 *
 * Libraries: `liblapacke.so.3` (Debian `liblapacke`) for `LAPACKE_sgesdd` and
 * `LAPACKE_ssyevd`, and `libopenblas.so.0` (Debian `libopenblas0`, which also
 * provides the LAPACK that LAPACKE calls) for `cblas_sgemm` and `cblas_ssyrk`;
 * the reference `libblas.so.3` is tried when OpenBLAS is absent.
 *
 * Every routine is bound in its column-major form or with row-major CBLAS, so
 * no library-side transposition copies are made; typed arrays are passed by
 * pointer on both runtimes (koffi and Deno's `buffer` type do not copy them).
 *
 * `OPENBLAS_NUM_THREADS` defaults to 1 (set before the first load when unset):
 * the per-block work runs one worker per core, so a library that spawns its
 * own threads in each worker would oversubscribe the machine.
 * `OFFTUNE_LINALG=js` disables the libraries (the pure-TS fallback runs).
 * After loading, OpenBLAS is asked which kernel it picked
 * (`openblas_get_corename`, absent from other BLAS): a generic one on a CPU
 * with AVX2 or AVX-512 gets one warning on stderr (`openblas_core.ts`;
 * docs/TROUBLESHOOTING.md "OpenBLAS picked a generic kernel").
 * `OFFTUNE_BLAS=cuda` sends large `sgemm`/`ssyrk` to cuBLAS instead
 * (`blas_select.ts`; docs/DISTRIBUTED.md "A CUDA machine").
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { type SelectedLinalg, withSelectedBlas } from "./blas_select.ts";
import { firstLoadable } from "./first_loadable.ts";
import { CORE_ADVICE_SHOWN_ENV, openblasCoreAdvice } from "./openblas_core.ts";

/**
 * The bound routines, with the layout and scaling arguments fixed to what the
 * room uses. Arrays are passed through untouched; the integer result of the
 * LAPACK routines is LAPACK's `info` (0 on success).
 */
export interface LinalgLibrary {
  /** `LAPACKE_sgesdd`, column-major: `a` (m×n, overwritten), `s`, `u` (ldu×·), `vt` (ldvt×n). */
  sgesdd(
    jobz: "S" | "A",
    m: number, n: number, a: Float32Array, lda: number, s: Float32Array,
    u: Float32Array, ldu: number, vt: Float32Array, ldvt: number,
  ): number;
  /** `LAPACKE_ssyevd`, column-major, eigenvectors wanted, lower triangle read: `a` becomes the vectors. */
  ssyevd(n: number, a: Float32Array, lda: number, w: Float32Array): number;
  /** `cblas_sgemm`, row-major, `c = op(a) op(b) + beta·c` (alpha 1; beta 0 unless given). */
  sgemm(
    transA: boolean, transB: boolean, m: number, n: number, k: number,
    a: Float32Array, lda: number, b: Float32Array, ldb: number, c: Float32Array, ldc: number, beta?: number,
  ): void;
  /** `cblas_ssyrk`, row-major, upper triangle of `c = aᵀ a + beta·c` (a is k×n; alpha 1; beta 0 unless given). */
  ssyrk(n: number, k: number, a: Float32Array, lda: number, c: Float32Array, ldc: number, beta?: number): void;
}

const LAPACKE_CANDIDATES = ["liblapacke.so.3", "liblapacke.so"];
const CBLAS_CANDIDATES = ["libopenblas.so.0", "libopenblas.so", "libblas.so.3"];

// CBLAS and LAPACKE enumerations (cblas.h, lapacke.h).
const LAPACK_COL_MAJOR = 102;
const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;
const CBLAS_UPPER = 121;
const CHAR_V = 0x56;
const CHAR_L = 0x4c;

type Native = (...args: unknown[]) => unknown;

interface RawSymbols {
  sgesdd: Native;
  ssyevd: Native;
  sgemm: Native;
  ssyrk: Native;
  /** What `openblas_get_corename()` returned; undefined for a BLAS without it. */
  corename?: string;
}

interface DenoFfi {
  dlopen(
    path: string,
    symbols: Record<string, { parameters: string[]; result: string; optional?: boolean }>,
  ): { symbols: Record<string, Native> };
  UnsafePointerView: { getCString(pointer: unknown): string };
}

interface KoffiModule {
  load(path: string): { func(signature: string): Native };
}

/** The CPU libraries' load result, with the OpenBLAS kernel when it says. */
type CpuLoad = { library?: LinalgLibrary; reason?: string; corename?: string };

let cached: CpuLoad | undefined;
let selected: SelectedLinalg | undefined;

/**
 * Loads (once) and returns the bound routines, or undefined when the
 * libraries cannot be loaded or `OFFTUNE_LINALG=js`; {@link linalgUnavailableReason}
 * then says why. With `OFFTUNE_BLAS=cuda` the large products run on cuBLAS,
 * and this throws when that cannot be loaded.
 */
export function loadLinalgLibrary(): LinalgLibrary | undefined {
  selected ??= withSelectedBlas(loadCpuLinalgLibrary());
  if (selected.error) throw selected.error;
  return selected.library;
}

/**
 * The CPU libraries alone (OpenBLAS, LAPACKE), whatever `OFFTUNE_BLAS` says:
 * the baseline the GPU is compared with (`src/bench/blas.ts`).
 */
export function loadCpuLinalgLibrary(): CpuLoad {
  cached ??= tryLoad();
  return cached;
}

/**
 * The kernel OpenBLAS picked for this CPU (`openblas_get_corename()`, e.g.
 * `SkylakeX`), for `offtune bench linalg`; undefined when the libraries are
 * not loaded or the BLAS is not OpenBLAS.
 */
export function openblasCorename(): string | undefined {
  return loadCpuLinalgLibrary().corename;
}

/** Why {@link loadLinalgLibrary} returned undefined (undefined when it did not). */
export function linalgUnavailableReason(): string | undefined {
  return loadCpuLinalgLibrary().reason;
}

/** Which implementation a decomposition runs: the native libraries or the pure-TS fallback. */
export type LinalgBackend = "lapack" | "js";

/**
 * The library a decomposition named `what` should use: the loaded one by
 * default, none for `"js"`; throws when `"lapack"` is asked for but the
 * libraries could not be loaded, saying why.
 */
export function libraryFor(what: string, backend?: LinalgBackend): LinalgLibrary | undefined {
  if (backend !== undefined && backend !== "lapack" && backend !== "js") {
    throw new Error(`${what}: unknown backend "${backend}": expected "lapack" or "js"`);
  }
  if (backend === "js") return undefined;
  const library = loadLinalgLibrary();
  if (backend === "lapack" && !library) {
    throw new Error(`${what}: backend "lapack" is unavailable: ${linalgUnavailableReason()}`);
  }
  return library;
}

function tryLoad(): CpuLoad {
  try {
    if (process.env.OFFTUNE_LINALG === "js") {
      return { reason: "OFFTUNE_LINALG=js disables the native libraries" };
    }
    process.env.OPENBLAS_NUM_THREADS ??= "1";
    const raw = "Deno" in globalThis ? bindDeno() : bindKoffi();
    warnOnGenericCore(raw.corename);
    return { library: wrap(raw), corename: raw.corename };
  } catch (error) {
    return { reason: error instanceof Error ? error.message : String(error) };
  }
}

function bindDeno(): RawSymbols {
  const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const lapacke = firstLoadable(LAPACKE_CANDIDATES, (path) =>
    deno.dlopen(path, {
      LAPACKE_sgesdd: {
        parameters: ["i32", "u8", "i32", "i32", "buffer", "i32", "buffer", "buffer", "i32", "buffer", "i32"],
        result: "i32",
      },
      LAPACKE_ssyevd: {
        parameters: ["i32", "u8", "u8", "i32", "buffer", "i32", "buffer"],
        result: "i32",
      },
    }).symbols);
  const cblas = firstLoadable(CBLAS_CANDIDATES, (path) =>
    deno.dlopen(path, {
      cblas_sgemm: {
        parameters: [
          "i32", "i32", "i32", "i32", "i32", "i32", "f32", "buffer", "i32", "buffer", "i32", "f32",
          "buffer", "i32",
        ],
        result: "void",
      },
      cblas_ssyrk: {
        parameters: ["i32", "i32", "i32", "i32", "i32", "f32", "buffer", "i32", "f32", "buffer", "i32"],
        result: "void",
      },
      openblas_get_corename: { parameters: [], result: "pointer", optional: true },
    }).symbols);
  const corename = cblas.openblas_get_corename?.();
  return {
    sgesdd: lapacke.LAPACKE_sgesdd,
    ssyevd: lapacke.LAPACKE_ssyevd,
    sgemm: cblas.cblas_sgemm,
    ssyrk: cblas.cblas_ssyrk,
    corename: corename ? deno.UnsafePointerView.getCString(corename) : undefined,
  };
}

function bindKoffi(): RawSymbols {
  const koffi = createRequire(import.meta.url)("koffi") as KoffiModule;
  const lapacke = firstLoadable(LAPACKE_CANDIDATES, (path) => {
    const lib = koffi.load(path);
    return {
      sgesdd: lib.func(
        "int LAPACKE_sgesdd(int layout, char jobz, int m, int n, float *a, int lda, float *s, " +
          "float *u, int ldu, float *vt, int ldvt)",
      ),
      ssyevd: lib.func(
        "int LAPACKE_ssyevd(int layout, char jobz, char uplo, int n, float *a, int lda, float *w)",
      ),
    };
  });
  const cblas = firstLoadable(CBLAS_CANDIDATES, (path) => {
    const lib = koffi.load(path);
    return {
      sgemm: lib.func(
        "void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, " +
          "const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)",
      ),
      ssyrk: lib.func(
        "void cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha, " +
          "const float *a, int lda, float beta, float *c, int ldc)",
      ),
      corename: koffiCorename(lib),
    };
  });
  return { ...lapacke, ...cblas };
}

/** `openblas_get_corename()` of `lib`, or undefined when it has no such symbol. */
function koffiCorename(lib: ReturnType<KoffiModule["load"]>): string | undefined {
  let get: Native;
  try {
    get = lib.func("const char *openblas_get_corename()");
  } catch {
    return undefined;
  }
  return (get() as string | null) ?? undefined;
}

/** Prints {@link openblasCoreAdvice}'s warning, if any, and marks it shown for later threads and children. */
function warnOnGenericCore(corename: string | undefined): void {
  const cpuinfo = (): string => {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return ""; // not Linux, or no read permission: no flags, no advice
    }
  };
  const advice = openblasCoreAdvice(corename, cpuinfo, process.env);
  if (!advice) return;
  console.error(`offtune: ${advice}`);
  process.env[CORE_ADVICE_SHOWN_ENV] = "1";
}

function wrap(raw: RawSymbols): LinalgLibrary {
  return {
    sgesdd: (jobz, m, n, a, lda, s, u, ldu, vt, ldvt) =>
      raw.sgesdd(LAPACK_COL_MAJOR, jobz.charCodeAt(0), m, n, a, lda, s, u, ldu, vt, ldvt) as number,
    ssyevd: (n, a, lda, w) =>
      raw.ssyevd(LAPACK_COL_MAJOR, CHAR_V, CHAR_L, n, a, lda, w) as number,
    sgemm: (transA, transB, m, n, k, a, lda, b, ldb, c, ldc, beta = 0) => {
      raw.sgemm(
        CBLAS_ROW_MAJOR, transA ? CBLAS_TRANS : CBLAS_NO_TRANS, transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
        m, n, k, 1, a, lda, b, ldb, beta, c, ldc,
      );
    },
    ssyrk: (n, k, a, lda, c, ldc, beta = 0) => {
      raw.ssyrk(CBLAS_ROW_MAJOR, CBLAS_UPPER, CBLAS_TRANS, n, k, 1, a, lda, beta, c, ldc);
    },
  };
}

