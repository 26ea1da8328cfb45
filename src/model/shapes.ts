/**
 * Weight shapes: the kernel-layout shapes a block's linears imply, and shape
 * comparison/printing for the loaders' error messages.
 *
 * @module
 */
import type { LinearSpec, WeightMap } from "./types.ts";

/** HF name of an untied LM head (an nn.Linear, stored `[V, d]`). */
export const LM_HEAD_WEIGHT = "lm_head.weight";

/**
 * `name.weight` `[in, out]` (kernel layout) and, when the linear has one,
 * `name.bias` `[out]`, for each spec, in order.
 */
export function linearShapes(specs: LinearSpec[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const spec of specs) {
    shapes.set(`${spec.name}.weight`, [spec.inFeatures, spec.outFeatures]);
    if (spec.hasBias) shapes.set(`${spec.name}.bias`, [spec.outFeatures]);
  }
  return shapes;
}

/** Adds `name.weight` and `name.bias`, both `[d]`, of each LayerNorm in `names` to `shapes`; returns `shapes`. */
export function addLayerNormShapes(shapes: Map<string, number[]>, names: readonly string[], d: number): Map<string, number[]> {
  for (const name of names) {
    shapes.set(`${name}.weight`, [d]);
    shapes.set(`${name}.bias`, [d]);
  }
  return shapes;
}

/** Whether two shapes are equal, dimension by dimension. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

/** A shape as `[a, b]` for messages. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * `Architecture.storedTransposed` for models built from `nn.Linear`: HF stores
 * `[out, in]` for the `.weight` of each listed block linear and for an untied
 * `lm_head.weight`; everything else (norms, biases, embeddings) as is.
 */
export function nnLinearTransposed(linearNames: readonly string[]): (name: string) => boolean {
  const weights = new Set(linearNames.map((n) => `${n}.weight`));
  weights.add(LM_HEAD_WEIGHT);
  return (name) => weights.has(name);
}

/**
 * The dimensions of `x`, checked to be `rank` of them (so destructuring them
 * is typed, and a tensor of the wrong rank fails with its name and shape).
 */
export function dimsOf(x: { shape: readonly number[] }, rank: number, what: string): number[] {
  if (x.shape.length !== rank) {
    throw new Error(`Expected ${what} of rank ${rank}, got shape ${formatShape(x.shape)}`);
  }
  return [...x.shape];
}

/**
 * A linear's output width as its weights store it (pruned or factored
 * weights included; the spec's width when absent): the width of its probe
 * (γ, docs/METHOD.md §2) and of its stored output.
 */
export function outputWidth(weights: WeightMap, spec: LinearSpec): number {
  const w = weights.get(`${spec.name}.weight`) ?? weights.get(`${spec.name}.weight_v`);
  return w ? (w.shape[1] as number) : spec.outFeatures;
}
