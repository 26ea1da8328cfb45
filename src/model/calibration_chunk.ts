/**
 * The calibration passes' work on one chunk of sequences (docs/METHOD.md §2,
 * docs/DESIGN.md "The shape"): a block's forward, the head's loss gradient,
 * a block's VJP with zero probes at every linear output. Plain tensor code
 * with plain arrays in and out, so the same function runs in the building
 * thread and in a calibration worker (docs/DISTRIBUTED.md "All cores of one
 * machine"): a chunk's bytes do not depend on where it ran.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { Matrix } from "../linalg/matrix.ts";
import { takeScratch } from "../linalg/scratch_arrays.ts";
import { tf } from "../tensor/backend.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";
import { outputWidth } from "./shapes.ts";
import type { Architecture, ModelConfig, WeightMap } from "./types.ts";
import { blockVjp, headLossGrad, streamedHeadLossGrad } from "./vjp.ts";
import type { VocabularyRows } from "./vocabulary.ts";

/** One linear's KFAC inputs from one chunk (docs/METHOD.md §2 "Hessian by KFAC"). */
export interface ChunkLinear {
  /** The linear's name inside the block. */
  name: string;
  /** Inputs `[n·(T-1), in]`; absent when the linear read the very same input as `sharesInputWith`. */
  x?: Matrix;
  /** Output gradients of the summed token loss, `[n·(T-1), out]`. */
  gamma: Matrix;
  /** The earlier linear of the chunk whose input this one read (q, k and v share one). */
  sharesInputWith?: string;
}

/** What a block's VJP on one chunk gives: the input gradient and, for a middle block, every linear's KFAC inputs. */
export interface ChunkGradient {
  /** The gradient at the block input, `[n, T, d]`, owned by the caller. */
  dx: Tensor;
  /** Per linear, in `arch.linears` order (empty without probes). */
  linears: ChunkLinear[];
}

/**
 * A block's output on one chunk, `[n, T, d]` from `[n, T, d]`, then the
 * outputs `[n, T, out]` of the named `linears` (bias added), in that order:
 * what the backward replays instead of multiplying again (`BlockOptions.replay`,
 * docs/GRADOT.md "Benchmarks"). The caller owns every tensor.
 *
 * @throws Error when the block did not run one of `linears`
 */
export function forwardChunk(arch: Architecture, cfg: ModelConfig, weights: WeightMap, x: Tensor, linears: readonly string[] = []): Tensor[] {
  const outputs = new Map<string, Tensor>(); // [n, T, out] per linear
  const options = linears.length > 0 ? { onLinearOutput: (name: string, y: Tensor) => outputs.set(name, tf.keep(y)) } : undefined;
  const y = tf.tidy(() => arch.block(weights, x, cfg, options)); // [n, T, d]
  const missing = linears.find((name) => !outputs.has(name));
  if (missing !== undefined) {
    tf.dispose([y, ...outputs.values()]);
    throw new Error(`calibrateForward: block did not run linear "${missing}"`);
  }
  return [y, ...linears.map((name) => outputs.get(name)!)];
}

/**
 * The head on one chunk: the summed next-token loss of its `n·(T-1)`
 * targets and its gradient at the last block's output `[n, T, d]`, so
 * chunks add up (docs/METHOD.md §2 scaling). With `head`, the head matrix
 * is streamed from the checkpoint (`streamedHeadLossGrad`); else it is in
 * `outer`, and `headLossGrad`'s mean-loss gradient is scaled to the sum.
 */
export function headChunk(
  arch: Architecture,
  cfg: ModelConfig,
  outer: WeightMap,
  hidden: Tensor, // [n, T, d]
  ids: Int32Array, // [n·T]
  head?: VocabularyRows,
): { lossSum: number; dHidden: Tensor } {
  if (head) return streamedHeadLossGrad(arch, cfg, outer, head, hidden, ids);
  const [n, t] = hidden.shape as [number, number, number];
  const targets = n * (t - 1);
  const idTensor = tf.tensor2d(ids, [n, t], "int32");
  const { loss, dHidden } = headLossGrad(arch, cfg, outer, hidden, idTensor);
  const summed = tf.tidy(() => tf.mul(dHidden, targets)); // [n, T, d]
  tf.dispose([dHidden, idTensor]);
  return { lossSum: loss * targets, dHidden: summed };
}

/**
 * `[n, T, w]` -> `[n·(T-1), w]`, copied off the tensor heap into a
 * {@link Matrix} in one pass: a sequence's last position predicts no target,
 * so its γ is zero and it is not a calibration token of the loss; dropping it
 * makes KFAC's token mean the loss's mean (docs/METHOD.md §2).
 */
function rowsWithTargets(x: Tensor): Matrix {
  const [n, t, w] = x.shape as [number, number, number];
  const out = takeScratch(n * (t - 1) * w); // [n·(T-1), w]; every value set below
  const values = peekValues(x); // a heap view: no tensor is made while it is read
  for (let s = 0; s < n; s++) out.set(values.subarray(s * t * w, (s * t + t - 1) * w), s * (t - 1) * w);
  return { rows: n * (t - 1), cols: w, data: out };
}

/**
 * The chunk's linear inputs `[n, T, in]`, captured by `onLinearInput` (kept
 * past the VJP); linears handed the very same tensor (q, k, v) share one capture,
 * and `sharedWith` names the first linear that read it.
 */
function captureInputs(): {
  inputs: Map<string, Tensor>;
  sharedWith: Map<string, string>;
  hook: (name: string, x: Tensor) => void;
} {
  const inputs = new Map<string, Tensor>();
  const sharedWith = new Map<string, string>();
  const firstReader = new Map<Tensor, string>();
  return {
    inputs,
    sharedWith,
    hook: (name, x) => {
      const first = firstReader.get(x);
      if (first !== undefined) {
        sharedWith.set(name, first);
        return;
      }
      firstReader.set(x, name);
      inputs.set(name, tf.keep(tf.clone(x))); // [n, T, in]; a clone shares x's memory, and the caller may own x
    },
  };
}

/**
 * A block's VJP on one chunk from the upstream gradient `dy` (of the summed
 * loss). With `probes`, zero probes at every linear output give each
 * linear's output gradient and a hook its input (docs/DESIGN.md "Models"):
 * the KFAC inputs of a middle block. Without, only `dx` (an adapter block
 * the backward passes through). With `replay` (the forward's linear outputs
 * on this chunk, {@link forwardChunk}) the recomputed forward skips the
 * linears' products; the values are bit for bit the same.
 *
 * @param block the block's index, for the error naming a linear it did not run
 */
export function backwardChunk(
  arch: Architecture,
  cfg: ModelConfig,
  weights: WeightMap,
  x: Tensor, // [n, T, d]
  dy: Tensor, // [n, T, d]
  probes: boolean,
  block: number,
  replay?: Map<string, Tensor>, // [n, T, out] per linear
): ChunkGradient {
  if (!probes) return { dx: blockVjp(arch, cfg, weights, x, dy, { wrt: [], replay }).dx, linears: [] };
  const [nSeq, t] = x.shape;
  const specs = arch.linears(cfg);
  // Made in the tensor heap: tf.zeros would first fill a fresh JS array of the same size.
  const zeros = new Map(specs.map((s) => [s.name, filledTensor([nSeq, t, outputWidth(weights, s)], (out) => out.fill(0))])); // [n, T, out]
  const { inputs, sharedWith, hook } = captureInputs();
  const { dx, dProbes } = blockVjp(arch, cfg, weights, x, dy, { wrt: [], probes: zeros, onLinearInput: hook, replay });
  try {
    const linears = specs.map((spec): ChunkLinear => {
      const owner = sharedWith.get(spec.name);
      const input = inputs.get(owner ?? spec.name);
      const gamma = dProbes?.get(spec.name);
      if (!input || !gamma) throw new Error(`calibrateBackward: block ${block} did not run linear "${spec.name}"`);
      const g = rowsWithTargets(gamma); // [n·(T-1), out]
      return owner ? { name: spec.name, gamma: g, sharesInputWith: owner } : { name: spec.name, x: rowsWithTargets(input), gamma: g };
    });
    return { dx, linears };
  } catch (e) {
    dx.dispose();
    throw e;
  } finally {
    tf.dispose([...zeros.values(), ...inputs.values(), ...(dProbes?.values() ?? [])]);
  }
}
