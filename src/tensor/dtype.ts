/**
 * Bit-exact conversions between float32 and the 16-bit float formats of
 * checkpoints (docs/DESIGN.md "Tensors": dtype helpers), for the safetensors
 * reader and the savers. Pure TypeScript on typed arrays; tfjs has neither
 * format.
 *
 * - IEEE binary16 (`F16`): 1 sign, 5 exponent, 10 mantissa bits.
 * - bfloat16 (`BF16`): the top 16 bits of a float32.
 *
 * Narrowing rounds to nearest, ties to even, as PyTorch's `.half()` and
 * `.bfloat16()` do; float16 keeps subnormals, overflows to ±Infinity, and
 * keeps NaN a NaN (payload truncated, never turned into an infinity). Every
 * 16-bit pattern survives a widen-then-narrow round trip unchanged.
 *
 * @module
 */

/** Bits of float32 values, sharing `x`'s memory. */
function bitsOf(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/** float32 bits of one binary16 pattern. */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  let mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal: shift the leading 1 up to the implicit-bit position.
  let shift = 0;
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1;
    shift++;
  }
  return (sign | ((113 - shift) << 23) | ((mantissa & 0x3ff) << 13)) >>> 0;
}

/** binary16 pattern nearest (ties to even) to the float32 with bits `u`. */
function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exponent = (u >>> 23) & 0xff;
  const mantissa = u & 0x7fffff;
  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    const payload = mantissa >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (exponent >= 143) return sign | 0x7c00; // |x| >= 2^16: past the largest finite (65504)
  if (exponent >= 113) {
    // Normal binary16; a carry out of the mantissa bumps the exponent (to Infinity at the top).
    const half = ((exponent - 112) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    return sign | (half + (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? 1 : 0));
  }
  if (exponent < 102) return sign; // |x| < 2^-25: rounds to ±0
  // Subnormal binary16: count units of 2^-24, rounding the shifted-out bits.
  const full = mantissa | 0x800000;
  const shift = 126 - exponent;
  const units = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return sign | (units + (rest > halfway || (rest === halfway && (units & 1) === 1) ? 1 : 0));
}

/** float32 bits of every binary16 pattern, `[65536]`, built on first use (256 KiB). */
let f16Table: Uint32Array | undefined;

/**
 * Widens IEEE binary16 bit patterns to float32 (exact), by table lookup, into
 * `out` (its first `bits.length` values; default a fresh array), returned.
 */
export function f16ToF32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(1 << 16);
    for (let h = 0; h < f16Table.length; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  const table = f16Table;
  const outBits = bitsOf(out);
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]];
  return out;
}

/** Narrows float32 values to IEEE binary16 bit patterns, round to nearest even. */
export function f32ToF16(x: Float32Array): Uint16Array {
  const inBits = bitsOf(x);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32BitsToF16Bits(inBits[i]);
  return out;
}

/**
 * Widens bfloat16 bit patterns to float32 (exact: the low 16 bits become
 * zero) into `out` (default a fresh array), returned.
 */
export function bf16ToF32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const outBits = bitsOf(out);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** Narrows float32 values to bfloat16 bit patterns, round to nearest even; NaN stays NaN. */
export function f32ToBf16(x: Float32Array): Uint16Array {
  const inBits = bitsOf(x);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const u = inBits[i];
    if ((u & 0x7fffffff) > 0x7f800000) {
      const top = u >>> 16;
      out[i] = (top & 0x7f) === 0 ? top | 0x40 : top;
    } else {
      out[i] = (u + 0x7fff + ((u >>> 16) & 1)) / 0x10000;
    }
  }
  return out;
}
