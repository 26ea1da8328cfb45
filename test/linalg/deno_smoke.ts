/**
 * Proves the `Deno.dlopen` path of src/linalg/lapack_ffi.ts: run with
 * `npx deno run -A test/linalg/deno_smoke.ts` (deno_ffi.test.ts does so).
 * Decomposes and multiplies small matrices through LAPACK/OpenBLAS and checks
 * them against the references, and reads OpenBLAS's kernel name; prints one
 * line, or throws (exit code 1) on any failure.
 */
import { eigh } from "../../src/linalg/eigh.ts";
import { gramTransposed, lapackAvailable, matmul } from "../../src/linalg/gemm.ts";
import { linalgUnavailableReason, openblasCorename } from "../../src/linalg/lapack_ffi.ts";
import { svd } from "../../src/linalg/svd.ts";
import {
  logspaceDescending, naiveMatmul, normalRng, orthogonalityError, randomMatrix, reconstructionError,
  withEigenvalues, withSingularValues,
} from "./reference.ts";

function fail(message: string): never {
  throw new Error(`deno linalg smoke FAILED: ${message}`);
}

if (!("Deno" in globalThis)) fail("not running under Deno");
if (!lapackAvailable()) fail(`LAPACK unavailable: ${linalgUnavailableReason()}`);

const a = withSingularValues(30, 20, logspaceDescending(1, 1e-6, 20), normalRng(1));
const { u, s, vt } = svd(a, { backend: "lapack" });
const recon = reconstructionError(a, u, s, vt);
const orth = Math.max(orthogonalityError(u), orthogonalityError(vt, true));
if (!(recon <= 5e-6 && orth <= 5e-6)) fail(`svd: reconstruction ${recon}, orthogonality ${orth} (≤ 5e-6)`);

const lambda = [-2, 0, 0, 1, 3, 3, 7];
const sym = withEigenvalues(lambda, normalRng(2));
const { values } = eigh(sym, { backend: "lapack" });
const eigErr = Math.max(...lambda.sort((x, y) => x - y).map((l, i) => Math.abs(values[i] - l))) / 7;
if (!(eigErr <= 5e-6)) fail(`eigh: eigenvalue error ${eigErr} (≤ 5e-6)`);

const x = randomMatrix(40, 9, normalRng(3));
const y = randomMatrix(9, 11, normalRng(4));
let gemmErr = 0;
for (const [c, ref] of [
  [matmul(x, y), naiveMatmul(x, y, false, false)],
  [gramTransposed(x), naiveMatmul(x, x, true, false)],
] as const) {
  for (let i = 0; i < c.data.length; i++) {
    gemmErr = Math.max(gemmErr, Math.abs(c.data[i] - ref.product[i]) / (2 * ref.k * 2 ** -24 * ref.magnitude[i]));
  }
}
if (!(gemmErr <= 1)) fail(`gemm: error ${gemmErr} of the float32 bound`);

console.log(
  `deno linalg smoke ok via Deno.dlopen: svd recon ${recon.toExponential(1)}, orth ${orth.toExponential(1)}; ` +
    `eigh ${eigErr.toExponential(1)}; gemm ${gemmErr.toExponential(1)} of bound; OpenBLAS kernel ${openblasCorename()}`,
);
