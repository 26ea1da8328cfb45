// The GPU BLAS path (src/linalg/blas_choice.ts, cuda_libraries.ts,
// device_buffers.ts, cublas_ffi.ts, cublas_blas.ts, blas_select.ts) on a
// machine without a GPU: the switch, the library search and its error, the
// buffer growth, and the whole FFI path against test/linalg/fake_cuda.c, a CPU
// stand-in for libcudart/libcublas with cuBLAS's argument and bounds checks.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parseBlasChoice } from "../../src/linalg/blas_choice.ts";
import { GPU_MIN_MACS, runsOnGpu, withSelectedBlas } from "../../src/linalg/blas_select.ts";
import { type CublasBlas, openCublas } from "../../src/linalg/cublas_blas.ts";
import { cudaLibraryCandidates, type CudaSearchContext, systemSearchContext } from "../../src/linalg/cuda_libraries.ts";
import { BUFFER_GRANULE, DeviceBuffers, grownCapacity } from "../../src/linalg/device_buffers.ts";
import type { LinalgLibrary } from "../../src/linalg/lapack_ffi.ts";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { naiveMatmul, normalRng, randomMatrix } from "./reference.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const require = createRequire(import.meta.url);
const koffi = require("koffi") as { load(path: string): { func(signature: string): () => number } };

/** A context whose file system is the given folder → names map (every other folder unreadable). */
function fakeContext(env: Record<string, string>, tree: Record<string, string[]>): CudaSearchContext {
  return { env, listDir: (dir) => tree[dir] };
}

describe("the BLAS switch", () => {
  it("defaults to openblas and names the source and the choices when unknown", () => {
    expect(parseBlasChoice(undefined)).toBe("openblas");
    expect(parseBlasChoice("")).toBe("openblas");
    expect(parseBlasChoice("CUDA")).toBe("cuda");
    expect(parseBlasChoice("openblas", "--blas")).toBe("openblas");
    expect(() => parseBlasChoice("cublas", "--blas")).toThrow('--blas: unknown BLAS "cublas": expected openblas or cuda');
  });

  it("sends products of at least 2^24 multiply-adds to the GPU and keeps OpenBLAS otherwise", () => {
    const calls: string[] = [];
    const fake = (who: string): Pick<LinalgLibrary, "sgemm" | "ssyrk"> => ({
      sgemm: (_ta, _tb, m, n, k) => void calls.push(`${who} sgemm ${m}x${n}x${k}`),
      ssyrk: (n, k) => void calls.push(`${who} ssyrk ${n}x${k}`),
    });
    const cpu = { ...fake("cpu"), sgesdd: () => 0, ssyevd: () => 0 } as LinalgLibrary;
    const gpu = { ...fake("gpu"), paths: { cudart: "", cublas: "" }, deviceBytes: () => 0 } as CublasBlas;
    expect(withSelectedBlas({ library: cpu }, {}, () => gpu).library).toBe(cpu);
    const lib = withSelectedBlas({ library: cpu }, { OFFTUNE_BLAS: "cuda" }, () => gpu).library!;
    const x = new Float32Array(0);
    lib.sgemm(false, false, 256, 256, 256, x, 0, x, 0, x, 0);
    lib.sgemm(false, false, 256, 256, 255, x, 0, x, 0, x, 0);
    lib.ssyrk(4096, 1, x, 0, x, 0);
    lib.ssyrk(100, 100, x, 0, x, 0);
    expect(calls).toEqual(["gpu sgemm 256x256x256", "cpu sgemm 256x256x255", "gpu ssyrk 4096x1", "cpu ssyrk 100x100"]);
    expect(runsOnGpu(1, 1, GPU_MIN_MACS)).toBe(true);
    expect(lib.sgesdd).toBe(cpu.sgesdd);
  });

  it("refuses cuda without OpenBLAS/LAPACKE or with an unknown name, instead of falling back", () => {
    const noCpu = withSelectedBlas({ reason: "OFFTUNE_LINALG=js disables the native libraries" }, { OFFTUNE_BLAS: "cuda" });
    expect(noCpu.error?.message).toBe(
      "OFFTUNE_BLAS=cuda: the GPU path also needs OpenBLAS and LAPACKE (SVD, eigh, small products): OFFTUNE_LINALG=js disables the native libraries",
    );
    expect(withSelectedBlas({}, { OFFTUNE_BLAS: "gpu" }).error?.message).toMatch('unknown BLAS "gpu"');
  });
});

describe("where the CUDA libraries are looked for", () => {
  it("tries OFFTUNE_CUDA_LIBS, the loader's path, the toolkits, then the Python wheels, newest first", () => {
    const ctx = fakeContext({ OFFTUNE_CUDA_LIBS: "/mine", HOME: "/home/u" }, {
      "/mine": ["libcublas.so.12", "libcublasLt.so.12", "libcublas.so.13.0.2", "libcublas.so.12.9.1.4", "notes.txt"],
      "/usr/local": ["bin", "cuda-12.4", "cuda", "cuda-13.0"],
      "/usr/local/cuda/lib64": ["libcublas.so"],
      "/usr/local/cuda-13.0/targets/x86_64-linux/lib": ["libcublas.so.13"],
      "/opt": ["torch"],
      "/opt/torch/.venv/lib": ["python3.12"],
      "/opt/torch/.venv/lib/python3.12/site-packages/nvidia": ["cu13", "cudnn"],
      "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib": ["libcublas.so.13", "libcudart.so.13"],
    });
    const { paths, searched } = cudaLibraryCandidates("cublas", ctx);
    expect(paths).toEqual([
      "/mine/libcublas.so.13.0.2", "/mine/libcublas.so.12.9.1.4", "/mine/libcublas.so.12",
      "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so.11.0", "libcublas.so",
      "/usr/local/cuda/lib64/libcublas.so",
      "/usr/local/cuda-13.0/targets/x86_64-linux/lib/libcublas.so.13",
      "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13",
    ]);
    expect(searched[0]).toBe("OFFTUNE_CUDA_LIBS (/mine)");
    expect(searched.join("; ")).toContain("/usr/local/cuda-12.4/lib64, /usr/local/cuda-12.4/lib, ");
    expect(searched.join("; ")).toContain("site-packages under /usr, /usr/local, /home/u/.local, /opt/conda, /opt/torch/.venv");
    expect(cudaLibraryCandidates("cudart", ctx).paths.at(-1)).toBe(
      "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13",
    );
  });

  // The first library the loader's path lacks (a machine can have CUDA's runtime without cuBLAS).
  const loadable = (library: string) =>
    ["13", "12", "11", "11.0"].map((v) => `lib${library}.so.${v}`).concat(`lib${library}.so`).some((name) => {
      try {
        koffi.load(name);
        return true;
      } catch {
        return false;
      }
    });
  const missing = ["cudart", "cublas"].find((library) => !loadable(library));
  const cudaOnLoaderPath = missing === undefined;

  it.skipIf(cudaOnLoaderPath)("asking for cuda without the libraries names the library and every place tried", () => {
    const empty = join(tmpdir(), "offtune-no-cuda-here");
    const selected = withSelectedBlas(
      { library: {} as LinalgLibrary },
      { OFFTUNE_BLAS: "cuda" },
      () => openCublas(fakeContext({ OFFTUNE_CUDA_LIBS: empty, LD_LIBRARY_PATH: "" }, {})),
    );
    const message = selected.error?.message ?? "";
    expect(message.startsWith(`OFFTUNE_BLAS=cuda: cannot load CUDA's lib${missing} (searched `)).toBe(true);
    expect(message).toContain(`OFFTUNE_CUDA_LIBS (${empty})`);
    expect(message).toContain("the loader's path");
    expect(message).toContain("/usr/local/cuda*/{lib64,lib} (none)");
    expect(message).toContain(`lib${missing}.so.13: `);
    expect(message).toMatch(/Set OFFTUNE_CUDA_LIBS to the folder\(s\) holding libcudart\.so\.\* and libcublas\.so\.\*$/);
  });

  it.skipIf(cudaOnLoaderPath)("the CLI's --blas cuda fails at once with that error, exit code 1", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "pipelines/offtune.ts", "inspect", "--blas", "cuda", "--model", "fixtures/small"], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, OFFTUNE_CUDA_LIBS: "/nonexistent", OFFTUNE_BLAS: "" },
      timeout: 60_000,
    });
    expect(run.stderr).toContain(`offtune inspect: OFFTUNE_BLAS=cuda: cannot load CUDA's lib${missing} (searched OFFTUNE_CUDA_LIBS (/nonexistent)`);
    expect(run.status).toBe(1);
  });
});

describe("device buffers", () => {
  it("grow geometrically in 2 MiB granules and never shrink", () => {
    expect(grownCapacity(0, 1)).toBe(BUFFER_GRANULE);
    expect(grownCapacity(BUFFER_GRANULE, 100)).toBe(BUFFER_GRANULE);
    expect(grownCapacity(4 * BUFFER_GRANULE, 4 * BUFFER_GRANULE + 1)).toBe(6 * BUFFER_GRANULE);
    expect(grownCapacity(BUFFER_GRANULE, 10 * BUFFER_GRANULE - 5)).toBe(10 * BUFFER_GRANULE);
    expect(() => grownCapacity(0, -1)).toThrow("is not a size");
  });

  it("reuse a slot's buffer and free the old one before allocating a larger one", () => {
    const log: string[] = [];
    let next = 0x1000n;
    const buffers = new DeviceBuffers(
      (bytes) => {
        log.push(`alloc ${bytes / BUFFER_GRANULE}`);
        return (next += 0x1000n);
      },
      (ptr) => void log.push(`free ${ptr.toString(16)}`),
    );
    const a = buffers.get(0, 100);
    expect(buffers.get(0, BUFFER_GRANULE)).toBe(a);
    const b = buffers.get(1, 3 * BUFFER_GRANULE);
    const a2 = buffers.get(0, BUFFER_GRANULE + 1);
    expect(a2).not.toBe(a);
    expect(buffers.get(1, 1)).toBe(b);
    expect(log).toEqual(["alloc 1", "alloc 3", `free ${a.toString(16)}`, "alloc 2"]);
    expect(buffers.heldBytes).toBe(5 * BUFFER_GRANULE);
  });
});

const cc = spawnSync("cc", ["--version"]).status === 0;

describe.skipIf(!cc)("cuBLAS through the FFI, against a CPU stand-in (test/linalg/fake_cuda.c)", () => {
  const dir = mkdtempSync(join(tmpdir(), "offtune-fake-cuda-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const so = join(dir, "libfakecuda.so");
  execFileSync("cc", ["-O1", "-shared", "-fPIC", "-o", so, join(ROOT, "test/linalg/fake_cuda.c")]);
  // One file under every name, so the "runtime" and "cuBLAS" share their allocation table.
  for (const name of ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"]) symlinkSync(so, join(dir, name));
  const gpu = openCublas(systemSearchContext({ OFFTUNE_CUDA_LIBS: dir }));
  const fake = koffi.load(so);
  const totalAllocations = fake.func("int fakeCudaTotalAllocations(void)");
  const liveAllocations = fake.func("int fakeCudaLiveAllocations(void)");
  const mathMode = fake.func("int fakeCublasMathMode(void)");
  const rng = normalRng(5);

  /** `m` stored with `pad` extra columns (leading dimension cols + pad) after `offset` leading junk values. */
  const strided = (m: Matrix, pad: number, offset: number) => {
    const ld = m.cols + pad;
    const data = new Float32Array(offset + m.rows * ld).fill(Number.NaN);
    for (let r = 0; r < m.rows; r++) data.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), offset + r * ld);
    return { view: data.subarray(offset), ld };
  };

  it("loads the libraries from OFFTUNE_CUDA_LIBS and asks for float32 math (no TF32)", () => {
    expect(gpu.paths).toEqual({ cudart: join(dir, "libcudart.so.13"), cublas: join(dir, "libcublas.so.13") });
    expect(mathMode()).toBe(0);
  });

  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
    it(`sgemm op(a)·op(b) row-major with strided operands, beta 0 and 1 (transA ${transA}, transB ${transB})`, () => {
      const [m, n, k] = [7, 5, 9];
      const a = randomMatrix(transA ? k : m, transA ? m : k, rng);
      const b = randomMatrix(transB ? n : k, transB ? k : n, rng);
      const ref = naiveMatmul(a, b, transA, transB).product;
      const sa = strided(a, 3, 2);
      const sb = strided(b, 1, 5);
      const c = strided({ rows: m, cols: n, data: new Float32Array(m * n).fill(Number.NaN) }, 2, 1);
      gpu.sgemm(transA, transB, m, n, k, sa.view, sa.ld, sb.view, sb.ld, c.view, c.ld);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) expect(c.view[i * c.ld + j]).toBeCloseTo(ref[i * n + j], 4);
        for (let j = n; j < c.ld && i < m - 1; j++) expect(c.view[i * c.ld + j]).toBeNaN(); // the gaps untouched
      }
      gpu.sgemm(transA, transB, m, n, k, sa.view, sa.ld, sb.view, sb.ld, c.view, c.ld, 1);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) expect(c.view[i * c.ld + j]).toBeCloseTo(2 * ref[i * n + j], 4);
    });
  }

  it("ssyrk writes the upper triangle of aᵀa (row-major), accumulates with beta 1, leaves the lower alone", () => {
    const [n, k] = [6, 11];
    const a = randomMatrix(k, n, rng);
    const ref = naiveMatmul(a, a, true, false).product;
    const sa = strided(a, 2, 3);
    const c = new Float32Array(n * n).fill(-7);
    gpu.ssyrk(n, k, sa.view, sa.ld, c, n);
    gpu.ssyrk(n, k, sa.view, sa.ld, c, n, 1);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (j >= i) expect(c[i * n + j]).toBeCloseTo(2 * ref[i * n + j], 4);
        else expect(c[i * n + j]).toBe(-7);
      }
    }
  });

  it("keeps three device buffers and reallocates only when a larger product comes", () => {
    const before = totalAllocations();
    const big = 700; // 700×700 floats: 1.9 MiB, within one granule
    const a = randomMatrix(big, 4, rng);
    const b = randomMatrix(4, big, rng);
    const c = new Float32Array(big * big);
    gpu.sgemm(false, false, big, big, 4, a.data, 4, b.data, big, c, big);
    gpu.sgemm(false, false, big, big, 4, a.data, 4, b.data, big, c, big);
    expect(totalAllocations() - before).toBeLessThanOrEqual(1); // at most C's slot grew
    const huge = new Float32Array(1100 * 1100); // 4.6 MiB: C's slot grows once
    const a2 = randomMatrix(1100, 1, rng);
    gpu.sgemm(false, true, 1100, 1100, 1, a2.data, 1, a2.data, 1, huge, 1100);
    expect(huge[1100 * 3 + 5]).toBeCloseTo(a2.data[3] * a2.data[5], 5);
    expect(liveAllocations()).toBe(3);
    expect(gpu.deviceBytes()).toBeGreaterThanOrEqual(1100 * 1100 * 4);
  });

  const deno = join(ROOT, "node_modules/.bin/deno");
  it.skipIf(!existsSync(deno))("the Deno.dlopen binding does the same (test/linalg/deno_cublas_smoke.ts)", () => {
    const run = spawnSync(deno, ["run", "-A", "test/linalg/deno_cublas_smoke.ts", dir], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    expect(run.stderr).not.toMatch(/FAILED|error/i);
    expect(run.stdout).toContain("deno cublas smoke ok via Deno.dlopen");
    expect(run.status).toBe(0);
  });
});
