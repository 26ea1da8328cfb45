/**
 * Whether OpenBLAS runs a kernel far older than the processor
 * (docs/TROUBLESHOOTING.md "OpenBLAS picked a generic kernel"). OpenBLAS
 * chooses its kernel when it is loaded. On the H200 virtual machines of
 * docs/DISTRIBUTED.md "A CUDA machine", Debian's OpenBLAS 0.3.21 chose
 * `Prescott` (no AVX) on a processor with AVX2 and AVX-512, and a GradOT
 * build of the OPT-125M shape on one thread took 115.1 s, against 32.5 s with
 * `OPENBLAS_CORETYPE=SkylakeX`. Nothing fails in that case, so the loader
 * (`lapack_ffi.ts`) prints the advice of {@link openblasCoreAdvice} once.
 *
 * @module
 */

/**
 * Kernels of OpenBLAS's `DYNAMIC_ARCH` builds that use no AVX2, as
 * `openblas_get_corename()` spells them: the SSE-era ones and the AVX-only
 * ones (Sandybridge, the AMD Bulldozer family).
 */
export const PRE_AVX2_CORES: ReadonlySet<string> = new Set([
  "Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn", "Dunnington",
  "Nehalem", "Athlon", "Opteron", "Opteron_SSE3", "Opteron(SSE3)", "Barcelona", "Nano", "Bobcat",
  "Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator",
]);

/** The AVX-512 subsets OpenBLAS's `SkylakeX` kernel is built for. */
const SKYLAKEX_FLAGS = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"];

/** Set by the loader once it has printed the advice, so threads and child processes started afterwards stay quiet. */
export const CORE_ADVICE_SHOWN_ENV = "OFFTUNE_OPENBLAS_CORE_ADVISED";

/** The flags of the first processor in `/proc/cpuinfo`'s text (x86's `flags : …` line); empty when there is none. */
export function cpuFlags(cpuinfo: string): Set<string> {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo);
  return new Set(line ? line[1].trim().split(/\s+/) : []);
}

/**
 * The warning to print when OpenBLAS's kernel `corename` is one of
 * {@link PRE_AVX2_CORES} although `cpuinfo()` (the text of `/proc/cpuinfo`,
 * read only once the kernel and the environment leave the question open, so
 * a library that picked a good kernel costs no read at load) shows AVX-512
 * (advice: `SkylakeX`) or AVX2 with FMA (`Haswell`);
 * undefined otherwise, when `corename` is unknown (a BLAS without
 * `openblas_get_corename`), when `OPENBLAS_CORETYPE` is already set (the
 * user chose), or when {@link CORE_ADVICE_SHOWN_ENV} says it was shown.
 */
export function openblasCoreAdvice(
  corename: string | undefined,
  cpuinfo: () => string,
  env: Record<string, string | undefined>,
): string | undefined {
  if (corename === undefined || !PRE_AVX2_CORES.has(corename)) return undefined;
  if (env.OPENBLAS_CORETYPE || env[CORE_ADVICE_SHOWN_ENV]) return undefined;
  const flags = cpuFlags(cpuinfo());
  const avx512 = SKYLAKEX_FLAGS.every((f) => flags.has(f));
  const avx2 = flags.has("avx2") && flags.has("fma");
  if (!avx512 && !avx2) return undefined;
  const core = avx512 ? "SkylakeX" : "Haswell";
  const has = avx512 ? "avx2 and avx512f" : "avx2";
  return `OpenBLAS picked its ${corename} kernel, which uses no AVX2, but this CPU has ${has} (/proc/cpuinfo): ` +
    `matrix products run several times slower than they could (a GradOT build 3.5x slower on one thread, ` +
    `docs/DISTRIBUTED.md "A CUDA machine"). Start offtune with OPENBLAS_CORETYPE=${core} in its environment ` +
    `(OpenBLAS reads it only when it is loaded), e.g. OPENBLAS_CORETYPE=${core} npm run offtune -- <verb> ...; ` +
    `docs/TROUBLESHOOTING.md "OpenBLAS picked a generic kernel".`;
}
