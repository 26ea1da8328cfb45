/**
 * A small seeded pseudo-random generator for everything training draws
 * (initial weights, batch windows), so a run is reproducible from its seed and
 * resumable from one 32-bit state word.
 *
 * Uniforms come from mulberry32 (Tommy Ettinger's 32-bit generator: period
 * 2^32, passes gjrand/PractRand up to the sizes we draw); normals from the
 * Box-Muller transform, using one pair of uniforms per normal and discarding
 * the sine half, so the whole state stays a single integer.
 *
 * @module
 */

/** A seeded generator whose complete state is {@link Prng.state}. */
export class Prng {
  #state: number;

  /** @param seed any integer; only its low 32 bits matter */
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new Error(`Prng seed must be an integer, got ${seed}`);
    this.#state = seed >>> 0;
  }

  /** The state word: `new Prng(p.state)` continues exactly where `p` is. */
  get state(): number {
    return this.#state;
  }

  /** A uniform draw in [0, 1) with 32 bits of resolution (mulberry32). */
  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`Prng.below needs a positive integer, got ${n}`);
    return Math.floor(this.uniform() * n);
  }

  /** A standard normal draw (Box-Muller, cosine branch). */
  normal(): number {
    const u1 = 1 - this.uniform(); // (0, 1]: log stays finite
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}
