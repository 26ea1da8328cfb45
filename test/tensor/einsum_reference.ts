/**
 * Brute-force einsum by enumerating every label assignment: the
 * independent reference for the Einsum kernel and its gradient.
 */

/** One operand: row-major data and shape. */
export interface Operand {
  values: Float32Array;
  shape: number[];
}

function flatIndex(term: string, shape: number[], assignment: Map<string, number>): number {
  let flat = 0;
  for (let axis = 0; axis < term.length; axis++) flat = flat * shape[axis] + (assignment.get(term[axis]) as number);
  return flat;
}

function forEachAssignment(sizes: Map<string, number>, visit: (assignment: Map<string, number>) => void): void {
  const labels = [...sizes.keys()];
  const assignment = new Map(labels.map((l) => [l, 0]));
  const total = labels.reduce((n, l) => n * (sizes.get(l) as number), 1);
  for (let step = 0; step < total; step++) {
    visit(assignment);
    for (let i = labels.length - 1; i >= 0; i--) {
      const next = (assignment.get(labels[i]) as number) + 1;
      if (next < (sizes.get(labels[i]) as number)) {
        assignment.set(labels[i], next);
        break;
      }
      assignment.set(labels[i], 0);
    }
  }
}

function split(equation: string): { inputs: string[]; output: string } {
  const [lhs, output] = equation.split("->");
  return { inputs: lhs.split(","), output };
}

function labelSizes(inputs: string[], operands: Operand[]): Map<string, number> {
  const sizes = new Map<string, number>();
  inputs.forEach((term, i) => [...term].forEach((l, axis) => sizes.set(l, operands[i].shape[axis])));
  return sizes;
}

/** `einsum(equation, ...operands)` by definition: Σ over unlisted labels of the product. */
export function bruteEinsum(equation: string, operands: Operand[]): Operand {
  const { inputs, output } = split(equation);
  const sizes = labelSizes(inputs, operands);
  const shape = [...output].map((l) => sizes.get(l) as number);
  const values = new Float32Array(shape.reduce((n, d) => n * d, 1));
  const sums = new Float64Array(values.length);
  forEachAssignment(sizes, (a) => {
    let product = 1;
    inputs.forEach((term, i) => (product *= operands[i].values[flatIndex(term, operands[i].shape, a)]));
    sums[flatIndex(output, shape, a)] += product;
  });
  values.set(sums);
  return { values, shape };
}

/**
 * Gradient of `Σ weights ⊙ einsum(equation, ...operands)` with respect to
 * operand `which`, by differentiating the defining sum term by term.
 */
export function bruteEinsumGrad(equation: string, operands: Operand[], weights: Operand, which: number): Operand {
  const { inputs, output } = split(equation);
  const sizes = labelSizes(inputs, operands);
  const target = operands[which];
  const sums = new Float64Array(target.values.length);
  forEachAssignment(sizes, (a) => {
    let product = weights.values[flatIndex(output, weights.shape, a)];
    inputs.forEach((term, i) => {
      if (i !== which) product *= operands[i].values[flatIndex(term, operands[i].shape, a)];
    });
    sums[flatIndex(inputs[which], target.shape, a)] += product;
  });
  return { values: Float32Array.from(sums), shape: target.shape };
}
