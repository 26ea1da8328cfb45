/**
 * Proves the `Deno.dlopen` path of src/linalg/cublas_ffi.ts against the CPU
 * stand-in test/linalg/fake_cuda.c (cublas.test.ts compiles it and runs
 * `deno run -A test/linalg/deno_cublas_smoke.ts <folder>`): loads it through
 * OFFTUNE_CUDA_LIBS, multiplies strided operands with every transpose and
 * runs ssyrk, against the float64 reference; prints one line, or throws.
 */
import { openCublas } from "../../src/linalg/cublas_blas.ts";
import { systemSearchContext } from "../../src/linalg/cuda_libraries.ts";
import { naiveMatmul, normalRng, randomMatrix } from "./reference.ts";

function fail(message: string): never {
  throw new Error(`deno cublas smoke FAILED: ${message}`);
}

if (!("Deno" in globalThis)) fail("not running under Deno");
const folder = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args[0];
const gpu = openCublas(systemSearchContext({ OFFTUNE_CUDA_LIBS: folder }));
if (!gpu.paths.cublas.startsWith(folder)) fail(`loaded ${gpu.paths.cublas}, not from ${folder}`);
const rng = normalRng(3);
const [m, n, k] = [6, 5, 7];
for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
  const a = randomMatrix(transA ? k : m, transA ? m : k, rng);
  const b = randomMatrix(transB ? n : k, transB ? k : n, rng);
  const ref = naiveMatmul(a, b, transA, transB).product;
  const c = new Float32Array(m * n);
  gpu.sgemm(transA, transB, m, n, k, a.data, a.cols, b.data, b.cols, c, n);
  const err = Math.max(...c.map((v, i) => Math.abs(v - ref[i])));
  if (!(err < 1e-4)) fail(`sgemm transA ${transA} transB ${transB}: error ${err}`);
}
const x = randomMatrix(9, 4, rng);
const gram = new Float32Array(16).fill(-1);
gpu.ssyrk(4, 9, x.data, 4, gram, 4);
const ref = naiveMatmul(x, x, true, false).product;
for (let i = 0; i < 4; i++) {
  for (let j = 0; j < 4; j++) {
    const ok = j >= i ? Math.abs(gram[i * 4 + j] - ref[i * 4 + j]) < 1e-4 : gram[i * 4 + j] === -1;
    if (!ok) fail(`ssyrk (${i}, ${j}): ${gram[i * 4 + j]} against ${j >= i ? ref[i * 4 + j] : "untouched -1"}`);
  }
}
console.log("deno cublas smoke ok via Deno.dlopen");
