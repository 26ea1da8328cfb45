/**
 * Gradient clipping by global norm, as `torch.nn.utils.clip_grad_norm_`:
 * with `n = ‖g‖₂` over all parameters, `g ← g · c/(n + 10⁻⁶)` when that factor
 * is below 1. Keeps one bad batch from throwing the run off (pretraining uses
 * `c = 1`).
 *
 * @module
 */

/**
 * Clips the flat gradient `grads` in place to global norm `maxNorm` and
 * returns the norm it had before clipping (worth logging: spikes show
 * instability before the loss does).
 */
export function clipGlobalNorm(grads: Float32Array, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`Gradient clipping norm must be positive, got ${maxNorm}`);
  let sum = 0;
  for (let i = 0; i < grads.length; i++) sum += grads[i] * grads[i];
  const norm = Math.sqrt(sum);
  const factor = maxNorm / (norm + 1e-6);
  if (factor < 1) {
    for (let i = 0; i < grads.length; i++) grads[i] *= factor;
  }
  return norm;
}
