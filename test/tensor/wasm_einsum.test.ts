import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { parseEinsum, planEinsum } from "../../src/tensor/einsum_plan.ts";
import { bruteEinsum, bruteEinsumGrad, type Operand } from "./einsum_reference.ts";
import { expectParity, maxAbsDiff, onBackend, randomData, startWasm } from "./parity.ts";

beforeAll(startWasm);

/** Equation and operand shapes: tfjs' own uses, attention layouts, and every label class. */
const cases: Array<[string, number[][]]> = [
  ["ij,jk->ik", [[3, 4], [4, 5]]],
  ["bhqd,bhkd->bhqk", [[2, 3, 5, 4], [2, 3, 6, 4]]],
  ["bhqk,bhkd->bhqd", [[2, 3, 5, 6], [2, 3, 6, 4]]],
  ["bqhd,bkhd->bhqk", [[2, 5, 3, 4], [2, 6, 3, 4]]],
  ["btd,hd->bth", [[2, 5, 4], [3, 4]]],
  ["ij,j->i", [[3, 4], [4]]],
  ["ijk,k->ij", [[2, 3, 3], [3]]],
  ["ijkl,l->ijk", [[2, 2, 3, 3], [3]]],
  ["ijklm,m->ijkl", [[2, 1, 2, 3, 3], [3]]],
  ["ijklmn,n->ijklm", [[1, 2, 1, 2, 3, 3], [3]]],
  ["ij->ji", [[3, 4]]],
  ["bij->bji", [[2, 3, 4]]],
  ["ij->", [[3, 4]]],
  ["ij->i", [[3, 4]]],
  ["i,i->", [[5], [5]]],
  ["i,j->ij", [[3], [4]]],
  ["bi,bi->b", [[3, 4], [3, 4]]],
  ["ij,ij->ij", [[3, 4], [3, 4]]],
  ["ik,kj->ji", [[3, 4], [4, 5]]],
  ["ijk,kl->il", [[2, 3, 4], [4, 5]]],
  ["aij,bjk->abik", [[2, 3, 4], [3, 4, 2]]],
  ["ij,kl->", [[2, 3], [3, 2]]],
];

/** tfjs' cpu Einsum throws or returns the wrong shape when a label is summed in one operand only. */
const cpuMishandles = new Set(["ijk,kl->il", "ij,kl->"]);

function operandsFor(shapes: number[][], seed: number): Operand[] {
  return shapes.map((shape, i) => ({ shape, values: randomData(shape.reduce((n, d) => n * d, 1), seed + i) }));
}

describe("wasm Einsum kernel", () => {
  it("is registered on wasm", () => {
    expect(tf.getKernel("Einsum", "wasm")).toBeDefined();
  });

  for (const [equation, shapes] of cases) {
    it(`matches brute force and cpu for ${equation}`, async () => {
      const operands = operandsFor(shapes, 10);
      const expected = bruteEinsum(equation, operands);
      const build = () => tf.einsum(equation, ...operands.map((o) => tf.tensor(o.values, o.shape)));
      const [actual] = await onBackend("wasm", build);
      const diff = maxAbsDiff(actual, expected);
      console.log(`einsum ${equation}: max abs diff wasm vs brute force ${diff.toExponential(2)} (bound 1e-5)`);
      expect(diff).toBeLessThanOrEqual(1e-5);
      if (!cpuMishandles.has(equation)) await expectParity(`einsum ${equation}`, build, 1e-5);
    });
  }

  it("rejects bad equations with the equation in the message", () => {
    expect(() => parseEinsum("ij,jk", 2)).toThrow(/Cannot use einsum equation "ij,jk": it needs exactly one "->"/);
    expect(() => parseEinsum("ii->i", 1)).toThrow(/label repeated within the term "ii"/);
    expect(() => parseEinsum("ij->k", 1)).toThrow(/output label "k" is in no operand/);
    expect(() => parseEinsum("ij,jk,kl->il", 3)).toThrow(/at most 2 operands/);
    expect(() => planEinsum(parseEinsum("ij,jk->ik", 2), [[2, 3], [4, 5]])).toThrow(
      /Einsum label "j" has size 3 and 4/,
    );
  });

  it("plans attention with at most one operand transpose", () => {
    const plan = planEinsum(parseEinsum("bhqd,bhkd->bhqk", 2), [[2, 3, 5, 4], [2, 3, 6, 4]]);
    expect(plan.perms[0]).toEqual([0, 1, 2, 3]);
    expect(plan.perms[1]).toEqual([0, 1, 3, 2]);
    expect(plan.matShapes).toEqual([[6, 5, 4], [6, 4, 6]]);
    expect(plan.outPerm).toEqual([0, 1, 2, 3]);
  });
});

describe("Einsum gradient", () => {
  for (const [equation, shapes] of cases) {
    it(`matches the brute-force derivative for ${equation}`, async () => {
      const operands = operandsFor(shapes, 20);
      const out = bruteEinsum(equation, operands);
      const weights: Operand = { shape: out.shape, values: randomData(out.values.length, 30) };
      const grads = await onBackend("wasm", () => {
        const loss = (...xs: tf.Tensor[]) =>
          tf.sum(tf.mul(tf.einsum(equation, ...xs), tf.tensor(weights.values, weights.shape)));
        return tf.grads(loss)(operands.map((o) => tf.tensor(o.values, o.shape)));
      });
      grads.forEach((g, i) => {
        const diff = maxAbsDiff(g, bruteEinsumGrad(equation, operands, weights, i));
        console.log(
          `einsum grad ${equation} operand ${i}: max abs diff vs brute force ${diff.toExponential(2)} (bound 1e-5)`,
        );
        expect(diff).toBeLessThanOrEqual(1e-5);
      });
    });
  }
});
