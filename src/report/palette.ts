/**
 * The report's chart colours: the Okabe–Ito palette, distinguishable under the
 * common colour-vision deficiencies and in greyscale print.
 *
 * @module
 */

/** Okabe–Ito colours in their usual order, black last. */
export const PALETTE = [
  "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
] as const;

/** The colour of the `i`-th series or point, cycling through {@link PALETTE}. */
export function colour(i: number): string {
  return PALETTE[i % PALETTE.length];
}
