/**
 * Einsum equations turned into one batched matrix product (docs/DESIGN.md
 * "Tensors"): the pure planning half of the wasm `Einsum` kernel and of the
 * `Einsum` gradient.
 *
 * Supported: what `tf.einsum` accepts, i.e. one or two operands, explicit
 * output (`->`), no ellipsis, no label repeated inside one term. That covers
 * tfjs' own uses (`rgbToGrayscale`: `ij,j->i` up to `ijklmn,n->ijklm`) and
 * attention (`bhqd,bhkd->bhqk`, `bhqk,bhkd->bhqd`, `btd,hd->bth`, ...).
 *
 * Labels of two operands fall in five classes: batch (both operands and the
 * output), free-A / free-B (one operand and the output), contracted (both
 * operands, not the output) and summed-alone (one operand only). Summed-alone
 * axes are reduced first, then A is permuted to [batch, freeA, contracted],
 * B to [batch, contracted, freeB], one plain `BatchMatMul` runs on the
 * [batch, rows, cols] views, and the [batch, freeA, freeB] result is
 * permuted to the output order. Orders are chosen so that the common
 * attention equations need at most one operand transpose.
 *
 * @module
 */

/** An equation split into its terms. */
export interface EinsumTerms {
  /** One label string per operand (`"bhqd"`). */
  inputs: string[];
  /** Labels of the output, in order. */
  output: string;
}

/** How to compute one equation on given operand shapes. */
export interface EinsumPlan {
  /** Per operand: axes summed away first (labels in that operand only and not in the output). */
  sumAxes: number[][];
  /** Per operand, after the sums: the permutation to [batch, freeA, contracted] / [batch, contracted, freeB] (one operand: to output order). */
  perms: number[][];
  /** Per operand: the [batch, rows, cols] view for `BatchMatMul` (empty for one operand). */
  matShapes: number[][];
  /** Shape of the product with one axis per label, before the output permutation. */
  resultShape: number[];
  /** Permutation from the product's axes to the output's. */
  outPerm: number[];
  /** Shape of the output. */
  outShape: number[];
}

/**
 * Splits and validates `equation` for `numInputs` operands, with errors that
 * quote the equation.
 */
export function parseEinsum(equation: string, numInputs: number): EinsumTerms {
  const fail = (why: string): never => {
    throw new Error(`Cannot use einsum equation "${equation}": ${why}`);
  };
  const compact = equation.replace(/\s/g, "");
  const sides = compact.split("->");
  if (sides.length !== 2) fail('it needs exactly one "->"');
  if (compact.includes(".")) fail("the ellipsis (...) is not supported");
  const inputs = sides[0].split(",");
  const output = sides[1];
  if (inputs.length > 2) fail(`at most 2 operands are supported, found ${inputs.length}`);
  if (inputs.length !== numInputs) fail(`it names ${inputs.length} operands but ${numInputs} were given`);
  for (const term of [...inputs, output]) {
    if (new Set(term).size !== term.length) fail(`label repeated within the term "${term}"`);
    if (/[^A-Za-z]/.test(term)) fail(`labels must be letters, found "${term}"`);
  }
  for (const label of output) {
    if (!inputs.some((term) => term.includes(label))) fail(`output label "${label}" is in no operand`);
  }
  return { inputs, output };
}

function sizeOf(labels: string, sizes: Map<string, number>): number {
  let n = 1;
  for (const label of labels) n *= sizes.get(label) as number;
  return n;
}

function shapeOf(labels: string, sizes: Map<string, number>): number[] {
  return [...labels].map((label) => sizes.get(label) as number);
}

function permutation(from: string, to: string): number[] {
  return [...to].map((label) => from.indexOf(label));
}

/** Plans `terms` on operands of the given shapes; throws on a size clash. */
export function planEinsum(terms: EinsumTerms, shapes: readonly (readonly number[])[]): EinsumPlan {
  const sizes = new Map<string, number>();
  terms.inputs.forEach((term, i) => {
    const shape = shapes[i];
    if (term.length !== shape.length) {
      throw new Error(`Einsum term "${term}" has ${term.length} labels but operand ${i} has shape [${shape}]`);
    }
    [...term].forEach((label, axis) => {
      const known = sizes.get(label);
      if (known !== undefined && known !== shape[axis]) {
        throw new Error(`Einsum label "${label}" has size ${known} and ${shape[axis]} (operand ${i} shape [${shape}])`);
      }
      sizes.set(label, shape[axis]);
    });
  });
  const { inputs, output } = terms;
  const inOther = (label: string, i: number) => inputs.some((term, j) => j !== i && term.includes(label));
  const sumAxes = inputs.map((term, i) =>
    [...term].flatMap((label, axis) => (output.includes(label) || inOther(label, i) ? [] : [axis]))
  );
  const kept = inputs.map((term, i) => [...term].filter((_, axis) => !sumAxes[i].includes(axis)).join(""));
  const outShape = shapeOf(output, sizes);
  if (inputs.length === 1) {
    return {
      sumAxes,
      perms: [permutation(kept[0], output)],
      matShapes: [],
      resultShape: outShape,
      outPerm: outShape.map((_, i) => i),
      outShape,
    };
  }
  const [a, b] = kept;
  const pick = (test: (label: string) => boolean) => [...output].filter(test).join("");
  const batch = pick((l) => a.includes(l) && b.includes(l));
  const freeA = pick((l) => a.includes(l) && !b.includes(l));
  const freeB = pick((l) => b.includes(l) && !a.includes(l));
  const contracted = [...a].filter((l) => b.includes(l) && !output.includes(l)).join("");
  const result = batch + freeA + freeB;
  const [nBatch, nA, nB, nK] = [batch, freeA, freeB, contracted].map((labels) => sizeOf(labels, sizes));
  return {
    sumAxes,
    perms: [permutation(a, batch + freeA + contracted), permutation(b, batch + contracted + freeB)],
    matShapes: [[nBatch, nA, nK], [nBatch, nK, nB]],
    resultShape: shapeOf(result, sizes),
    outPerm: permutation(result, output),
    outShape,
  };
}
