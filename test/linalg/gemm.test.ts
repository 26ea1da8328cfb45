import { describe, expect, test } from "vitest";
import { gramTransposed, lapackAvailable, matmul } from "../../src/linalg/gemm.ts";
import { gramTransposedJs, matmulJs } from "../../src/linalg/gemm_js.ts";
import { linalgUnavailableReason } from "../../src/linalg/lapack_ffi.ts";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { naiveMatmul, normalRng, randomMatrix } from "./reference.ts";

const HAS_LAPACK = lapackAvailable();

/**
 * Each entry may differ from the float64 triple loop by the classical
 * float32 dot-product bound K·u·(|A||B|)_ij (u = 2⁻²⁴), doubled for slack.
 */
const UNIT = 2 ** -24;

const BACKENDS = [
  { name: "openblas", skip: !HAS_LAPACK, mm: matmul, gram: gramTransposed },
  { name: "js", skip: false, mm: matmulJs, gram: gramTransposedJs },
];

function transposed(a: Matrix): Matrix {
  const data = new Float32Array(a.data.length);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) data[j * a.rows + i] = a.data[i * a.cols + j];
  return { rows: a.cols, cols: a.rows, data };
}

/** Asserts `c` matches the naive product within the rounding bound; returns the worst error / bound. */
function expectNaive(c: Matrix, a: Matrix, b: Matrix, transA: boolean, transB: boolean): number {
  const ref = naiveMatmul(a, b, transA, transB);
  expect([c.rows, c.cols]).toEqual([ref.m, ref.n]);
  let worst = 0;
  for (let i = 0; i < c.data.length; i++) {
    const bound = 2 * ref.k * UNIT * ref.magnitude[i];
    worst = Math.max(worst, Math.abs(c.data[i] - ref.product[i]) / bound);
  }
  expect(worst).toBeLessThanOrEqual(1);
  return worst;
}

for (const { name, skip, mm, gram } of BACKENDS) {
  const reason = skip ? ` (skipped: needs Debian libopenblas0 and liblapacke: ${linalgUnavailableReason()})` : "";
  describe.skipIf(skip)(`gemm, ${name}${reason}`, () => {
    test("matmul matches a naive triple loop for every transpose combination", () => {
      const rng = normalRng(1);
      const a = randomMatrix(37, 23, rng); // op(a): 37×23
      const b = randomMatrix(23, 41, rng); // op(b): 23×41
      let worst = 0;
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const aa = ta ? transposed(a) : a;
        const bb = tb ? transposed(b) : b;
        worst = Math.max(worst, expectNaive(mm(aa, bb, ta, tb), aa, bb, ta, tb));
      }
      console.log(`matmul ${name}: max |ΔC| / (2·K·u·|A||B|) ${worst.toExponential(1)} (≤ 1)`);
    });

    test("gramTransposed is xᵀx, exactly symmetric", () => {
      const x = randomMatrix(50, 19, normalRng(2)); // N×in
      const g = gram(x);
      const worst = expectNaive(g, x, x, true, false);
      for (let i = 0; i < 19; i++) for (let j = 0; j < i; j++) expect(g.data[i * 19 + j]).toBe(g.data[j * 19 + i]);
      console.log(`gramTransposed ${name}: max |ΔC| / (2·K·u·|Xᵀ||X|) ${worst.toExponential(1)} (≤ 1)`);
    });
  });
}

describe("gemm input checks", () => {
  test("rejects mismatched inner dimensions and malformed matrices", () => {
    const a = randomMatrix(3, 4, normalRng(3));
    const b = randomMatrix(3, 5, normalRng(4));
    expect(() => matmul(a, b)).toThrow(
      "matmul: inner dimensions differ: op(a) is 3×4 and op(b) is 3×5 (a 3×4, b 3×5)",
    );
    expect(matmul(a, b, true, false).rows).toBe(4);
    expect(() => gramTransposed({ rows: 0, cols: 2, data: new Float32Array(0) })).toThrow(
      "gramTransposed: x has shape 0×2: expected positive integer dimensions",
    );
  });
});
