/**
 * The plane (Givens/Jacobi) rotation shared by the pure-TS decompositions
 * (`svd_jacobi.ts`, `eigh_jacobi.ts`): how to choose it, and how to apply it.
 *
 * @module
 */

/**
 * `[cos θ, sin θ]` of the Jacobi rotation whose tangent is the smaller root
 * of t² + 2ζt − 1 = 0 (|θ| ≤ π/4, the choice that converges); ζ is the
 * cotangent of twice the angle that zeroes the targeted entry.
 */
export function jacobiRotation(zeta: number): [number, number] {
  const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.hypot(1, zeta));
  const c = 1 / Math.sqrt(1 + t * t);
  return [c, c * t];
}

/**
 * Rotates two strided runs of `data` in place: `x ← c·x − s·y`,
 * `y ← s·x + c·y`, where x and y start at `xOffset` and `yOffset` and have
 * `length` entries `stride` apart.
 */
export function rotateRuns(
  data: Float64Array, xOffset: number, yOffset: number, length: number, stride: number, c: number, s: number,
): void {
  for (let i = 0; i < length * stride; i += stride) {
    const x = data[xOffset + i];
    const y = data[yOffset + i];
    data[xOffset + i] = c * x - s * y;
    data[yOffset + i] = s * x + c * y;
  }
}
