/**
 * Ownership helpers for the {@link WeightMap}s records carry.
 *
 * @module
 */
import type { Matrix } from "../linalg/matrix.ts";
import type { WeightMap } from "./types.ts";
import { tf } from "../tensor/backend.ts";
import { peekValues } from "../tensor/heap_view.ts";
import type { Tensor } from "@tensorflow/tfjs";

/** Disposes every tensor of a weight map (a record's owner ends its life). */
export function disposeWeights(weights: WeightMap): void {
  for (const t of weights.values()) t.dispose();
}

/** A rank-2 tensor's data as a row-major {@link Matrix} (a copy off the tensor heap). */
export function toMatrix(t: Tensor): Matrix {
  const [rows, cols] = matrixShape(t);
  return { rows, cols, data: t.dataSync() as Float32Array };
}

function matrixShape(t: Tensor): [number, number] {
  if (t.rank !== 2) throw new Error(`Expected a matrix, got a tensor of shape [${t.shape.join(", ")}]`);
  return t.shape as [number, number];
}

/**
 * A rank-2 tensor's data as a row-major {@link Matrix} without a copy where
 * the backend allows (`peekValues`): valid only until the next tensor op, and
 * read-only. For pure-JS numerics that read a weight once and keep nothing.
 */
export function peekMatrix(t: Tensor): Matrix {
  const [rows, cols] = matrixShape(t);
  return { rows, cols, data: peekValues(t) };
}

/** A {@link Matrix} as a rank-2 tensor. */
export function fromMatrix(m: Matrix): Tensor {
  return tf.tensor2d(m.data, [m.rows, m.cols]);
}

/** Replaces `name` in `weights` by `tensor`, disposing the old one. */
export function replaceWeight(weights: WeightMap, name: string, tensor: Tensor): void {
  weights.get(name)?.dispose();
  weights.set(name, tensor);
}
