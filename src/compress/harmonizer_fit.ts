/**
 * Training a ScaleOT harmonizer (docs/METHOD.md §3 "ScaleOT", Dynamic
 * LayerReplace): the harmonizer that replaces a middle block learns to map
 * the block's calibration inputs to its outputs, by AdamW
 * (`src/train/adamw.ts`, no weight decay) on the mean squared error
 *
 *     MSE = (1 / (n d)) Σ_t ‖harmonizer(x_t) − y_t‖²
 *
 * one chunk of calibration sequences per step, cycling through the chunks.
 * It starts at the identity (`initHarmonizer`), so its first loss is the
 * loss of skipping the block.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { sequenceChunks, type StoredActivations } from "../io/activation_store.ts";
import { harmonizerForward, harmonizerShapes, initHarmonizer } from "../model/harmonizer.ts";
import type { WeightMap } from "../model/types.ts";
import { tf } from "../tensor/backend.ts";
import { AdamW, decaysByDefault } from "../train/adamw.ts";
import { Prng } from "../train/prng.ts";

/** What {@link fitHarmonizer} reads of a stored `[N, T, d]` array. */
export type HiddenStates = Pick<StoredActivations, "sequences" | "length" | "width" | "read">;

/** Options of {@link fitHarmonizer}; defaults in {@link HARMONIZER_DEFAULTS}. */
export interface HarmonizerFitOptions {
  /** Rank r of the harmonizer's down/up projections. */
  rank?: number;
  /** AdamW steps. */
  steps?: number;
  /** Learning rate (constant). */
  lr?: number;
  /** Sequences per step. */
  chunk?: number;
  /** Seed of `A`'s initial draw (src/train/prng.ts). */
  seed?: number;
  /** The norm's epsilon (the model's `normEps`). */
  eps?: number;
  /** Called after each step with the step's loss (progress). */
  onStep?: (step: number, loss: number) => void;
}

/** ScaleOT's harmonizer training defaults (docs/METHOD.md §3 "ScaleOT"). */
export const HARMONIZER_DEFAULTS = { rank: 8, steps: 100, lr: 3e-3, chunk: 4, seed: 0, eps: 1e-5 } as const;

/** A trained harmonizer: its weights by shard name and the MSE of every step. */
export interface FittedHarmonizer {
  /** Values by weight name (`HARMONIZER_WEIGHTS`), shapes `harmonizerShapes(d, rank)`. */
  weights: Map<string, Float32Array>;
  /** The training MSE of each step, in order (the first is the identity's on its chunk). */
  losses: number[];
}

/**
 * Trains the harmonizer that maps `inputs` to `outputs` (both `[N, T, d]`,
 * a replaced block's calibration input and output; module doc).
 *
 * @throws Error when the two arrays differ in shape or an option is out of range
 */
export function fitHarmonizer(inputs: HiddenStates, outputs: HiddenStates, options: HarmonizerFitOptions = {}): FittedHarmonizer {
  const o = { ...HARMONIZER_DEFAULTS, ...options };
  const d = inputs.width;
  if (outputs.sequences !== inputs.sequences || outputs.length !== inputs.length || outputs.width !== d) {
    throw new Error(
      `Harmonizer inputs [${inputs.sequences}, ${inputs.length}, ${d}] and outputs ` +
        `[${outputs.sequences}, ${outputs.length}, ${outputs.width}] differ in shape`,
    );
  }
  for (const [key, value] of [["rank", o.rank], ["steps", o.steps], ["chunk", o.chunk]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`Harmonizer ${key} must be a positive integer, got ${value}`);
  }
  if (!(o.lr > 0)) throw new RangeError(`Harmonizer learning rate must be positive, got ${o.lr}`);
  const shapes = [...harmonizerShapes(d, o.rank)];
  const init = initHarmonizer(d, o.rank, new Prng(o.seed));
  const sizes = shapes.map(([name]) => init.get(name)!.length);
  const params = new Float32Array(sizes.reduce((a, b) => a + b, 0)); // all values end to end
  let offset = 0;
  shapes.forEach(([name], i) => {
    params.set(init.get(name)!, offset);
    offset += sizes[i];
  });
  const optimizer = new AdamW(
    shapes.map(([name, shape], i) => ({ name, size: sizes[i], decay: decaysByDefault(name, shape) })),
    { weightDecay: 0 },
  );
  const chunks = sequenceChunks(inputs.sequences, o.chunk);
  const losses: number[] = [];
  const grads = new Float32Array(params.length);
  for (let step = 0; step < o.steps; step++) {
    const [from, to] = chunks[step % chunks.length];
    const n = to - from;
    const loss = tf.tidy(() => {
      const x = tf.tensor3d(inputs.read(from, to), [n, inputs.length, d]); // [n, T, d]
      const y = tf.tensor3d(outputs.read(from, to), [n, inputs.length, d]); // [n, T, d]
      let at = 0;
      const tensors = shapes.map(([, shape], i) => {
        const t = tf.tensor(params.subarray(at, at + sizes[i]), shape);
        at += sizes[i];
        return t;
      });
      const mse = (...ws: Tensor[]) => {
        const weights: WeightMap = new Map(shapes.map(([name], i) => [name, ws[i]]));
        return tf.mean(tf.squaredDifference(harmonizerForward(weights, x, o.eps), y));
      };
      const { value, grads: g } = tf.valueAndGrads(mse)(tensors);
      let gAt = 0;
      g.forEach((t, i) => {
        grads.set(t.dataSync() as Float32Array, gAt);
        gAt += sizes[i];
      });
      return value.dataSync()[0];
    });
    optimizer.step(params, grads, o.lr);
    losses.push(loss);
    o.onStep?.(step, loss);
  }
  const weights = new Map<string, Float32Array>();
  offset = 0;
  shapes.forEach(([name], i) => {
    weights.set(name, params.slice(offset, offset + sizes[i]));
    offset += sizes[i];
  });
  return { weights, losses };
}
