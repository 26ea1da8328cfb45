/**
 * AdamW (Loshchilov & Hutter, decoupled weight decay) with bias correction,
 * written as PyTorch's `torch.optim.AdamW` computes it, so numbers match it:
 *
 *     θ ← θ − η λ θ                                   (decoupled decay, if the tensor decays)
 *     m ← β₁ m + (1 − β₁) g
 *     v ← β₂ v + (1 − β₂) g²
 *     θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
 *
 * The state lives in plain `Float32Array`s (one flat `m` and `v` over all
 * parameters, in the order given), not in tfjs: the update is a cheap
 * element-wise loop, the arithmetic is the same on every backend (so a resumed
 * run continues bit-exactly), and the state serialises as it is.
 * {@link AdamW.stepVariables} adapts the same update to tfjs `Variable`s for
 * callers that train with `tf.variableGrads` (adapter tuning).
 *
 * Weight decay by default skips biases, normalisation weights and embeddings
 * ({@link decaysByDefault}): decaying them only pulls the model towards a
 * worse function (GPT-2/nanoGPT and OPT's metaseq do the same).
 *
 * @module
 */
import { tf } from "../tensor/backend.ts";
import type { Tensor, Variable } from "@tensorflow/tfjs";

/** Hyper-parameters of {@link AdamW}; PyTorch's names, OPT pretraining defaults. */
export interface AdamWOptions {
  /** β₁, default 0.9. */
  beta1?: number;
  /** β₂, default 0.95 (OPT, GPT-3). */
  beta2?: number;
  /** ε, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ, default 0.1 (OPT). */
  weightDecay?: number;
}

/** One parameter tensor the optimizer updates: its name, element count and whether it decays. */
export interface AdamWParam {
  name: string;
  size: number;
  decay: boolean;
}

/** The serialisable optimizer state: step count and the flat moment buffers. */
export interface AdamWState {
  /** Number of updates applied so far (t of the bias correction). */
  step: number;
  /** First moments, flat in parameter order. */
  m: Float32Array;
  /** Second moments, flat in parameter order. */
  v: Float32Array;
}

/**
 * Whether a parameter decays by default: matrices of linear maps do; biases,
 * norm weights (rank 1) and embeddings (name contains `embed`) do not.
 */
export function decaysByDefault(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && !name.includes("embed");
}

/** AdamW over a fixed list of parameter tensors laid end to end. */
export class AdamW {
  /** The parameters, in the order their values lie end to end. */
  readonly params: readonly AdamWParam[];
  /** Decay rate of the first-moment estimate. */
  readonly beta1: number;
  /** Decay rate of the second-moment estimate. */
  readonly beta2: number;
  /** Added to the second-moment root in the denominator. */
  readonly eps: number;
  /** Decoupled weight decay, applied to the parameters that decay. */
  readonly weightDecay: number;
  /** Total number of parameter values. */
  readonly size: number;
  #step = 0;
  #m: Float32Array;
  #v: Float32Array;
  #offsets = new Map<string, number>();

  /** An optimizer over `params`; `options` default to β₁ 0.9, β₂ 0.95, ε 1e-8, weight decay 0.1. */
  constructor(params: readonly AdamWParam[], options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.1;
    for (const [key, value] of [["beta1", this.beta1], ["beta2", this.beta2]] as const) {
      if (!(value >= 0 && value < 1)) throw new Error(`AdamW ${key} must lie in [0, 1), got ${value}`);
    }
    if (!(this.eps > 0)) throw new Error(`AdamW eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`AdamW weight decay must be non-negative, got ${this.weightDecay}`);
    let offset = 0;
    for (const p of params) {
      if (this.#offsets.has(p.name)) throw new Error(`AdamW parameter "${p.name}" is listed twice`);
      this.#offsets.set(p.name, offset);
      offset += p.size;
    }
    this.params = params.map((p) => ({ ...p }));
    this.size = offset;
    this.#m = new Float32Array(offset);
    this.#v = new Float32Array(offset);
  }

  /** Updates applied so far (t of the bias correction). */
  get updates(): number {
    return this.#step;
  }

  /**
   * One update of the flat parameter vector `params` (in place) from the flat
   * gradient `grads`, both in the order of {@link AdamW.params}.
   */
  step(params: Float32Array, grads: Float32Array, lr: number): void {
    if (params.length !== this.size || grads.length !== this.size) {
      throw new Error(
        `AdamW expects ${this.size} parameters and gradients, got ${params.length} and ${grads.length}`,
      );
    }
    const t = ++this.#step;
    let offset = 0;
    for (const p of this.params) {
      this.#update(params, grads, offset, offset, p.size, p.decay, lr, t);
      offset += p.size;
    }
  }

  /**
   * The same update applied to tfjs variables: `grads` holds a gradient for
   * every parameter name (as `tf.variableGrads` returns them). Gradients are
   * read back to the CPU, so this suits small trainable sets (adapters).
   */
  stepVariables(variables: ReadonlyMap<string, Variable>, grads: Readonly<Record<string, Tensor>>, lr: number): void {
    const t = ++this.#step;
    for (const p of this.params) {
      const variable = variables.get(p.name);
      const grad = grads[p.name];
      if (!variable || !grad) throw new Error(`AdamW has no variable or gradient for parameter "${p.name}"`);
      if (variable.size !== p.size || grad.size !== p.size) {
        throw new Error(
          `AdamW parameter "${p.name}" has ${p.size} elements, variable ${variable.size}, gradient ${grad.size}`,
        );
      }
      const data = variable.dataSync().slice() as Float32Array;
      this.#update(data, grad.dataSync() as Float32Array, 0, this.#offsets.get(p.name)!, p.size, p.decay, lr, t);
      const updated = tf.tensor(data, variable.shape, "float32");
      variable.assign(updated);
      updated.dispose();
    }
  }

  /** The element-wise AdamW update of one tensor (formula in the module doc). */
  #update(
    params: Float32Array,
    grads: Float32Array,
    at: number,
    stateAt: number,
    size: number,
    decay: boolean,
    lr: number,
    t: number,
  ): void {
    const { beta1, beta2, eps } = this;
    const shrink = decay ? 1 - lr * this.weightDecay : 1;
    const stepSize = lr / (1 - beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    const m = this.#m;
    const v = this.#v;
    for (let i = 0; i < size; i++) {
      const g = grads[at + i];
      const j = stateAt + i;
      const mi = (m[j] = beta1 * m[j] + (1 - beta1) * g);
      const vi = (v[j] = beta2 * v[j] + (1 - beta2) * g * g);
      params[at + i] = params[at + i] * shrink - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }

  /** A copy of the state, for checkpoints. */
  state(): AdamWState {
    return { step: this.#step, m: this.#m.slice(), v: this.#v.slice() };
  }

  /** Replaces the state with a saved one (sizes must match this optimizer's parameters). */
  load(state: AdamWState): void {
    if (state.m.length !== this.size || state.v.length !== this.size) {
      throw new Error(
        `Cannot load AdamW state: it holds ${state.m.length} and ${state.v.length} moments, the model has ${this.size} parameters`,
      );
    }
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new Error(`Cannot load AdamW state: step must be a non-negative integer, got ${state.step}`);
    }
    this.#step = state.step;
    this.#m = state.m.slice();
    this.#v = state.v.slice();
  }
}
