import { describe, expect, it } from "vitest";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/tensor/dtype.ts";

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

/** binary16 value of a bit pattern by the IEEE formula, in doubles. */
function f16Formula(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return sign * (e === 0 ? m * 2 ** -24 : 2 ** (e - 15) * (1 + m / 1024));
}

/**
 * Nearest value (ties to even) of a binary format with `mantBits` stored
 * mantissa bits and smallest normal exponent `minExp`, computed in doubles;
 * |x| >= `overflowAt` gives ±Infinity.
 */
function roundRef(x: number, mantBits: number, minExp: number, overflowAt: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  if (a >= overflowAt) return sign * Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, minExp) - mantBits);
  const q = a / ulp;
  let r = Math.floor(q);
  if (q - r > 0.5 || (q - r === 0.5 && r % 2 === 1)) r++;
  return r === 0 ? sign * 0 : sign * r * ulp;
}

/** float32 values with random bits, exponents spread over [minExp, maxExp). */
function randomFloats(count: number, minExp: number, maxExp: number, seed: number): Float32Array {
  const bits = new Uint32Array(count);
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  for (let i = 0; i < count; i++) {
    const exponent = minExp + (next() % (maxExp - minExp)) + 127;
    bits[i] = ((next() & 1) << 31) | (Math.max(exponent, 0) << 23) | (next() & 0x7fffff);
  }
  return new Float32Array(bits.buffer);
}

function expectValues(actual: Float32Array, expected: (i: number) => number, label: string): void {
  let bad = 0;
  for (let i = 0; i < actual.length; i++) if (!Object.is(actual[i], expected(i))) bad++;
  console.log(`${label}: ${bad} of ${actual.length} differ`);
  expect(bad).toBe(0);
}

describe("float16", () => {
  it("widens all 65536 patterns to the IEEE formula's value (±0, subnormals, ±Inf, NaN)", () => {
    const wide = f16ToF32(ALL16);
    expectValues(wide, (i) => f16Formula(i), "f16ToF32 vs formula");
  });

  it("round-trips all 65536 patterns bit for bit, NaN payloads included", () => {
    expect(f32ToF16(f16ToF32(ALL16))).toEqual(ALL16);
  });

  it("reads known constants", () => {
    const known: Array<[number, number]> = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0400, 2 ** -14],
      [0x0001, 2 ** -24],
      [0x03ff, 2 ** -14 - 2 ** -24],
      [0x3555, 0.333251953125],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
      [0x8000, -0],
    ];
    const wide = f16ToF32(Uint16Array.from(known, ([h]) => h));
    known.forEach(([, v], i) => expect(Object.is(wide[i], v)).toBe(true));
  });

  it("rounds known values to nearest even, with overflow and underflow", () => {
    const cases: Array<[number, number]> = [
      [65519, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [2 ** -25, 0x0000],
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002],
      [2 ** -24, 0x0001],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [0.1, 0x2e66],
      [-0, 0x8000],
      [NaN, 0x7e00],
      [2 ** -14 - 2 ** -25, 0x0400],
      [2 ** -14 - 2 ** -24, 0x03ff],
    ];
    const narrow = f32ToF16(Float32Array.from(cases, ([v]) => v));
    cases.forEach(([v, h], i) => expect(narrow[i], `f32ToF16(${v})`).toBe(h));
  });

  it("narrows 200000 random floats to the nearest binary16 computed in doubles", () => {
    const x = randomFloats(200000, -27, 17, 7);
    const back = f16ToF32(f32ToF16(x));
    expectValues(back, (i) => roundRef(x[i], 10, -14, 65520), "f32ToF16 vs double reference");
  });

  it("keeps a NaN whose payload is only in the low bits a NaN", () => {
    const nan = new Float32Array(new Uint32Array([0x7f800001, 0xff800fff]).buffer);
    const h = f32ToF16(nan);
    expect(Number.isNaN(f16ToF32(h)[0]) && Number.isNaN(f16ToF32(h)[1])).toBe(true);
    expect(h[1] & 0x8000).toBe(0x8000);
  });
});

describe("bfloat16", () => {
  it("widens all 65536 patterns to the float32 with those top bits", () => {
    const wide = new Uint32Array(bf16ToF32(ALL16).buffer);
    expect(wide.every((bits, i) => bits === i * 65536)).toBe(true);
  });

  it("round-trips all 65536 patterns bit for bit", () => {
    expect(f32ToBf16(bf16ToF32(ALL16))).toEqual(ALL16);
  });

  it("reads and rounds known constants", () => {
    const wide = bf16ToF32(Uint16Array.of(0x3f80, 0x4049, 0xc000, 0x7f80, 0x0001, 0x7f7f));
    expect(Array.from(wide)).toEqual([1, 3.140625, -2, Infinity, 2 ** -133, (2 - 2 ** -7) * 2 ** 127]);
    const bits = new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7fc00000, 0x7f800001, 0x7f7fffff, 0x80000000]);
    expect(Array.from(f32ToBf16(new Float32Array(bits.buffer)))).toEqual([
      0x3f80,
      0x3f82,
      0x3f81,
      0x7fc0,
      0x7fc0,
      0x7f80,
      0x8000,
    ]);
    expect(Array.from(f32ToBf16(Float32Array.of(Math.PI, 3.4e38)))).toEqual([0x4049, 0x7f80]);
  });

  it("narrows 200000 random floats to the nearest bfloat16 computed in doubles", () => {
    const x = randomFloats(200000, -140, 128, 11);
    const back = bf16ToF32(f32ToBf16(x));
    expectValues(back, (i) => roundRef(x[i], 7, -126, (2 - 2 ** -8) * 2 ** 127), "f32ToBf16 vs double reference");
  });
});
