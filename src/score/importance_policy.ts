/**
 * ScaleOT's learned layer importance (docs/METHOD.md §3 "ScaleOT"): a
 * policy over which `K` of the `M` middle blocks to replace, trained by
 * REINFORCE on a reward the caller computes for each choice (the build's:
 * minus the calibration LM loss of the model with the chosen blocks
 * skipped, `src/operators/scaleot.ts`).
 *
 * The policy is Plackett–Luce over logits `θ` `[M]`: the `K` blocks are
 * drawn one after another without replacement, each with probability
 * `softmax(θ)` over the blocks not drawn yet, so
 *
 *     log π(S) = Σ_k ( θ_{s_k} − log Σ_{j ∈ R_k} exp θ_j )
 *     ∂ log π / ∂θ_j = Σ_k ( [j = s_k] − [j ∈ R_k] softmax_{R_k}(θ)_j )
 *
 * with `R_k` the blocks left before draw `k`. Each episode draws one choice
 * `S` (the seeded `Prng` of src/train/prng.ts), scores it, and steps
 * `θ ← θ + lr · (R − b) / (s + ε) · ∇ log π(S)`: `b` is a moving average of
 * the rewards (the baseline) and `s` one of `|R − b|`, so the step does not
 * depend on the reward's scale. Importance is `−θ`: the blocks the policy
 * learned to replace are the least important.
 *
 * @module
 */
import { Prng } from "../train/prng.ts";

/** Options of {@link reinforceImportance}; defaults in {@link POLICY_DEFAULTS}. */
export interface PolicyOptions {
  /** Episodes (one sampled choice and one update each). */
  episodes?: number;
  /** Seed of the sampling. */
  seed?: number;
  /** Step size on the logits. */
  lr?: number;
  /** Weight of the past in the moving averages `b` and `s`, in [0, 1). */
  baselineDecay?: number;
  /** Called after each episode with its choice and reward (progress). */
  onEpisode?: (episode: number, replaced: number[], reward: number) => void;
}

/** The REINFORCE defaults of ScaleOT's importance policy (docs/METHOD.md §3 "ScaleOT"). */
export const POLICY_DEFAULTS = { episodes: 32, seed: 0, lr: 0.5, baselineDecay: 0.8 } as const;

/** What {@link reinforceImportance} learned. */
export interface LearnedImportance {
  /** `−θ` per block: higher is more important. */
  importance: Float64Array;
  /** The reward of each episode, in order. */
  rewards: number[];
}

/** Draws `count` of `logits.length` blocks without replacement, Plackett–Luce (module doc); returns them in draw order. */
export function samplePlackettLuce(logits: ArrayLike<number>, count: number, prng: Prng): number[] {
  const left = Array.from({ length: logits.length }, (_, i) => i);
  const drawn: number[] = [];
  for (let k = 0; k < count; k++) {
    const max = Math.max(...left.map((j) => logits[j]));
    const weights = left.map((j) => Math.exp(logits[j] - max));
    let u = prng.uniform() * weights.reduce((a, b) => a + b, 0);
    let pick = left.length - 1;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i];
      if (u < 0) {
        pick = i;
        break;
      }
    }
    drawn.push(left[pick]);
    left.splice(pick, 1);
  }
  return drawn;
}

/** `∂ log π(drawn) / ∂θ` of a Plackett–Luce draw (module doc), `[M]`. */
export function plackettLuceGradient(logits: ArrayLike<number>, drawn: readonly number[]): Float64Array {
  const grad = new Float64Array(logits.length);
  const left = new Set(Array.from({ length: logits.length }, (_, i) => i));
  for (const s of drawn) {
    const members = [...left];
    const max = Math.max(...members.map((j) => logits[j]));
    const weights = members.map((j) => Math.exp(logits[j] - max));
    const total = weights.reduce((a, b) => a + b, 0);
    members.forEach((j, i) => (grad[j] -= weights[i] / total));
    grad[s] += 1;
    left.delete(s);
  }
  return grad;
}

/**
 * Learns the importance of `blocks` middle blocks by REINFORCE (module doc):
 * `reward(replaced)` scores replacing the blocks at the given positions
 * (`0..blocks-1`, ascending). Deterministic for a seed.
 *
 * @throws RangeError when `count` is not in [1, blocks) or an option is out of range
 */
export async function reinforceImportance(
  blocks: number,
  count: number,
  reward: (replaced: number[]) => number | Promise<number>,
  options: PolicyOptions = {},
): Promise<LearnedImportance> {
  const o = { ...POLICY_DEFAULTS, ...options };
  if (!Number.isInteger(count) || count < 1 || count >= blocks) {
    throw new RangeError(`The importance policy replaces 1..${blocks - 1} of ${blocks} blocks, got ${count}`);
  }
  if (!Number.isInteger(o.episodes) || o.episodes < 1) throw new RangeError(`--episodes must be a positive integer, got ${o.episodes}`);
  if (!(o.lr > 0)) throw new RangeError(`The importance policy's learning rate must be positive, got ${o.lr}`);
  if (!(o.baselineDecay >= 0 && o.baselineDecay < 1)) throw new RangeError(`The baseline decay must be in [0, 1), got ${o.baselineDecay}`);
  const prng = new Prng(o.seed);
  const logits = new Float64Array(blocks); // θ, [M]: uniform policy at first
  const rewards: number[] = [];
  let baseline = 0;
  let scale = 0;
  for (let episode = 0; episode < o.episodes; episode++) {
    const drawn = samplePlackettLuce(logits, count, prng);
    const replaced = [...drawn].sort((a, b) => a - b);
    const r = await reward(replaced);
    if (!Number.isFinite(r)) throw new Error(`The importance reward of replacing blocks ${replaced.join(", ")} is ${r}`);
    rewards.push(r);
    if (episode === 0) baseline = r;
    const advantage = r - baseline;
    scale = episode === 0 ? Math.abs(advantage) : o.baselineDecay * scale + (1 - o.baselineDecay) * Math.abs(advantage);
    if (scale > 0) {
      const grad = plackettLuceGradient(logits, drawn);
      for (let j = 0; j < blocks; j++) logits[j] += (o.lr * advantage * grad[j]) / (scale + 1e-12);
    }
    baseline = o.baselineDecay * baseline + (1 - o.baselineDecay) * r;
    o.onEpisode?.(episode, replaced, r);
  }
  return { importance: logits.map((t) => -t), rewards };
}
