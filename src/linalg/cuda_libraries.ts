/**
 * Where CUDA's shared libraries are looked for (docs/DISTRIBUTED.md "A CUDA
 * machine"): `libcudart` and `libcublas` ship in several places (the CUDA
 * toolkit, distribution packages, the `nvidia-*` Python wheels that PyTorch
 * installs), and the last two are not on the loader's path.
 *
 * Order: the folders of `OFFTUNE_CUDA_LIBS` (colon-separated), then the bare
 * sonames (the loader's own path: `LD_LIBRARY_PATH`, `ld.so.cache`), then
 * the `lib64`, `lib` and `targets/x86_64-linux/lib` of each `/usr/local/cuda`,
 * `/usr/local/cuda-<version>`, then the `nvidia/<package>/lib` folders of the
 * Python site-packages under `VIRTUAL_ENV`, `CONDA_PREFIX`, `/usr`,
 * `/usr/local`, `~/.local`, `/opt/conda` and each `/opt/<name>/.venv`. In a
 * folder the newest version comes first.
 *
 * @module
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";

/** The CUDA libraries the GPU BLAS loads, by base name. */
export type CudaLibrary = "cudart" | "cublas" | "cublasLt";

/** Sonames tried on the loader's path, newest CUDA first. */
const SONAME_VERSIONS = ["13", "12", "11", "11.0"];

/** What {@link cudaLibraryCandidates} reads from its surroundings (injectable for tests). */
export interface CudaSearchContext {
  /** The environment (`OFFTUNE_CUDA_LIBS`, `VIRTUAL_ENV`, `CONDA_PREFIX`, `HOME`). */
  env: Record<string, string | undefined>;
  /** The names in a folder, or undefined when it cannot be read. */
  listDir(dir: string): string[] | undefined;
}

/** The real file system and process environment. */
export function systemSearchContext(env: Record<string, string | undefined>): CudaSearchContext {
  return {
    env,
    listDir(dir) {
      try {
        return readdirSync(dir);
      } catch {
        return undefined;
      }
    },
  };
}

/** The candidate paths for one library and the folders that were searched. */
export interface CudaCandidates {
  /** Paths (or bare sonames) to hand to the dynamic loader, in order. */
  paths: string[];
  /** The places searched, in order, in words for the error message (OFFTUNE_CUDA_LIBS, the loader's path, the folders). */
  searched: string[];
}

/** The version suffix of `lib<name>.so[.x[.y]]` as numbers, or undefined when `file` is not that library. */
function sonameVersion(file: string, library: CudaLibrary): number[] | undefined {
  const match = new RegExp(`^lib${library}\\.so((?:\\.\\d+)*)$`).exec(file);
  return match ? match[1].split(".").filter((s) => s !== "").map(Number) : undefined;
}

function newestFirst(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (b[i] ?? -1) - (a[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/** The Python prefixes whose site-packages may hold `nvidia/<package>/lib`. */
function pythonPrefixes(ctx: CudaSearchContext): string[] {
  const prefixes = [ctx.env.VIRTUAL_ENV, ctx.env.CONDA_PREFIX, "/usr", "/usr/local", ctx.env.HOME && join(ctx.env.HOME, ".local"), "/opt/conda"]
    .filter((p): p is string => !!p);
  for (const name of ctx.listDir("/opt") ?? []) prefixes.push(join("/opt", name, ".venv"), join("/opt", name, "venv"));
  return prefixes;
}

/** The `nvidia/<package>/lib` folders under the site-packages of `prefixes` that exist. */
function pythonNvidiaDirs(ctx: CudaSearchContext, prefixes: string[]): string[] {
  const dirs: string[] = [];
  for (const prefix of prefixes) {
    const lib = join(prefix, "lib");
    for (const python of (ctx.listDir(lib) ?? []).filter((n) => /^python3(\.\d+)?$/.test(n)).sort()) {
      for (const site of ["site-packages", "dist-packages"]) {
        const nvidia = join(lib, python, site, "nvidia");
        for (const pkg of (ctx.listDir(nvidia) ?? []).sort()) dirs.push(join(nvidia, pkg, "lib"), join(nvidia, pkg, "lib64"));
      }
    }
  }
  return dirs;
}

/** `/usr/local/cuda*` toolkit folders that exist, `/usr/local/cuda` first, then the newest version. */
function toolkitDirs(ctx: CudaSearchContext): string[] {
  const roots = (ctx.listDir("/usr/local") ?? []).filter((n) => /^cuda(-[\d.]+)?$/.test(n))
    .sort((a, b) => (a === "cuda" ? -1 : b === "cuda" ? 1 : b.localeCompare(a, "en", { numeric: true })));
  return roots.flatMap((r) => ["lib64", "lib", "targets/x86_64-linux/lib"].map((sub) => join("/usr/local", r, sub)));
}

/**
 * Every path the dynamic loader should try for `library`, in the order of
 * the module comment, and the places searched. Pure given `ctx`.
 */
export function cudaLibraryCandidates(library: CudaLibrary, ctx: CudaSearchContext): CudaCandidates {
  const fromDir = (dir: string): string[] =>
    (ctx.listDir(dir) ?? [])
      .map((file) => ({ file, version: sonameVersion(file, library) }))
      .filter((f): f is { file: string; version: number[] } => f.version !== undefined)
      .sort((a, b) => newestFirst(a.version, b.version))
      .map((f) => join(dir, f.file));
  const override = (ctx.env.OFFTUNE_CUDA_LIBS ?? "").split(":").filter((d) => d !== "");
  const toolkit = toolkitDirs(ctx);
  const prefixes = pythonPrefixes(ctx);
  const python = pythonNvidiaDirs(ctx, prefixes);
  return {
    paths: [
      ...override.flatMap(fromDir),
      ...SONAME_VERSIONS.map((v) => `lib${library}.so.${v}`),
      `lib${library}.so`,
      ...[...toolkit, ...python].flatMap(fromDir),
    ],
    searched: [
      override.length > 0 ? `OFFTUNE_CUDA_LIBS (${override.join(", ")})` : "OFFTUNE_CUDA_LIBS (unset)",
      `the loader's path (LD_LIBRARY_PATH=${ctx.env.LD_LIBRARY_PATH ?? ""}, ld.so.cache)`,
      toolkit.length > 0 ? toolkit.join(", ") : "/usr/local/cuda*/{lib64,lib} (none)",
      `nvidia/*/lib in the Python site-packages under ${prefixes.join(", ")}` + (python.length > 0 ? "" : " (none)"),
    ],
  };
}
