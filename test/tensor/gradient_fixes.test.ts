import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { maxAbsDiff, onBackend, randomData, type Result, startWasm } from "./parity.ts";

beforeAll(startWasm);

const backends = ["wasm", "cpu"] as const;

/** Asserts `got` is within `tol` of `expected` on one backend and prints the diff. */
function expectClose(label: string, got: Result, expected: Result, tol: number): void {
  const diff = maxAbsDiff(got, expected);
  console.log(`${label}: max abs diff vs brute force ${diff.toExponential(2)} (bound ${tol})`);
  expect(diff).toBeLessThanOrEqual(tol);
}

function strides(shape: number[]): number[] {
  return shape.map((_, i) => shape.slice(i + 1).reduce((n, d) => n * d, 1));
}

function unravel(flat: number, shape: number[]): number[] {
  return strides(shape).map((s, i) => Math.floor(flat / s) % shape[i]);
}

describe("Cumsum gradient", () => {
  const shape = [2, 3, 4];
  const x = randomData(24, 50);
  const w = randomData(24, 51);

  /** d/dx Σ w ⊙ cumsum(x): x[p] feeds every q on its line along `axis` at or past it (per flags). */
  function brute(axis: number, exclusive: boolean, reverse: boolean): Result {
    const g = new Float32Array(24);
    for (let p = 0; p < 24; p++) {
      const ip = unravel(p, shape);
      for (let q = 0; q < 24; q++) {
        const iq = unravel(q, shape);
        if (iq.some((v, d) => d !== axis && v !== ip[d])) continue;
        const [i, j] = [ip[axis], iq[axis]];
        const feeds = reverse ? (exclusive ? j < i : j <= i) : (exclusive ? j > i : j >= i);
        if (feeds) g[p] += w[q];
      }
    }
    return { shape, values: g };
  }

  for (const backend of backends) {
    for (const axis of [0, 1, 2]) {
      for (const [exclusive, reverse] of [[false, false], [true, false], [false, true], [true, true]]) {
        it(`is right on ${backend}, axis ${axis}, exclusive=${exclusive} reverse=${reverse}`, async () => {
          const [g] = await onBackend(
            backend,
            () =>
              tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.cumsum(t, axis, exclusive, reverse), tf.tensor(w, shape))))(
                tf.tensor(x, shape),
              ),
          );
          expectClose(`cumsum grad ${backend} axis ${axis}`, g, brute(axis, exclusive, reverse), 1e-5);
        });
      }
    }
  }
});

describe("BatchMatMul gradient with broadcast batches", () => {
  /** Gradients of Σ w ⊙ matMul(a, b, tA, tB) by loops over the broadcast output. */
  function brute(
    a: Float32Array,
    aShape: number[],
    b: Float32Array,
    bShape: number[],
    tA: boolean,
    tB: boolean,
    w: Float32Array,
  ): [Result, Result] {
    const rank = Math.max(aShape.length, bShape.length);
    const pad = (s: number[]) => [...new Array<number>(rank - s.length).fill(1), ...s];
    const [pa, pb] = [pad(aShape), pad(bShape)];
    const batch = pa.slice(0, -2).map((d, i) => Math.max(d, pb[i]));
    const [m, k] = tA ? [pa[rank - 1], pa[rank - 2]] : [pa[rank - 2], pa[rank - 1]];
    const n = tB ? pb[rank - 2] : pb[rank - 1];
    const [sa, sb] = [strides(pa), strides(pb)];
    const [ga, gb] = [new Float32Array(a.length), new Float32Array(b.length)];
    const batches = batch.reduce((p, d) => p * d, 1);
    for (let t = 0; t < batches; t++) {
      const idx = unravel(t, batch);
      const baseA = idx.reduce((s, v, d) => s + (pa[d] === 1 ? 0 : v) * sa[d], 0);
      const baseB = idx.reduce((s, v, d) => s + (pb[d] === 1 ? 0 : v) * sb[d], 0);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          const wij = w[(t * m + i) * n + j];
          for (let l = 0; l < k; l++) {
            const ai = baseA + (tA ? l * m + i : i * k + l);
            const bi = baseB + (tB ? j * k + l : l * n + j);
            ga[ai] += wij * b[bi];
            gb[bi] += wij * a[ai];
          }
        }
      }
    }
    return [{ shape: aShape, values: ga }, { shape: bShape, values: gb }];
  }

  const cases: Array<[string, number[], number[]]> = [
    ["two-sided [2,1]x[1,2]", [2, 1, 3, 4], [1, 2, 4, 5]],
    ["linear layer [2,3]x[-]", [2, 3, 3, 4], [4, 5]],
    ["shared a [-]x[2]", [3, 4], [2, 4, 5]],
  ];
  for (const backend of backends) {
    for (const [label, aLogical, bLogical] of cases) {
      for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]]) {
        it(`is right on ${backend} for ${label}, transposeA=${tA} transposeB=${tB}`, async () => {
          const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
          const aShape = tA ? swap(aLogical) : aLogical;
          const bShape = tB ? swap(bLogical) : bLogical;
          const a = randomData(aShape.reduce((p, d) => p * d, 1), 60);
          const b = randomData(bShape.reduce((p, d) => p * d, 1), 61);
          const outShape = [
            ...tf.backend_util.assertAndGetBroadcastShape(aLogical.slice(0, -2), bLogical.slice(0, -2)),
            aLogical[aLogical.length - 2],
            bLogical[bLogical.length - 1],
          ];
          const w = randomData(outShape.reduce((p, d) => p * d, 1), 62);
          const grads = await onBackend(
            backend,
            () =>
              tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, tA, tB), tf.tensor(w, outShape))))(
                [
                  tf.tensor(a, aShape),
                  tf.tensor(b, bShape),
                ],
              ),
          );
          const expected = brute(a, aShape, b, bShape, tA, tB, w);
          expectClose(`matMul grad a ${backend} ${label}`, grads[0], expected[0], 1e-5);
          expectClose(`matMul grad b ${backend} ${label}`, grads[1], expected[1], 1e-5);
        });
      }
    }
  }
});

/** Gradient of Σ w ⊙ f(x) where f reads x at `positions` (found by running f on 0, 1, 2, ...). */
function bruteGather(size: number, positions: Float32Array, w: Float32Array): Float32Array {
  const g = new Float32Array(size);
  positions.forEach((p, j) => (g[p] += w[j]));
  return g;
}

describe("StridedSlice gradient", () => {
  const shape = [4, 5, 6];
  /** Label, begin, end, strides, [beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask]. */
  const specs: Array<[string, number[], number[], number[], number[]]> = [
    ["negative and uneven strides", [1, -1, 0], [4, 0, 6], [2, -2, 3], [0, 0, 0, 0, 0]],
    ["begin and end masks", [1, 2, 1], [0, 0, 5], [1, 2, 2], [1, 2, 0, 0, 0]],
    ["shrink axis", [2, 1, 0], [3, 4, 6], [1, 1, 1], [0, 0, 0, 0, 1]],
    ["ellipsis and new axis", [0, 1], [0, 4], [1, 2], [0, 0, 1, 0, 0]],
  ];
  for (const backend of backends) {
    for (const [label, begin, end, step, [bm, em, ellipsis, newAxis, shrink]] of specs) {
      it(`is right on ${backend} for ${label}`, async () => {
        const slice = (t: tf.Tensor) => tf.stridedSlice(t, begin, end, step, bm, em, ellipsis, newAxis, shrink);
        const size = 4 * 5 * 6;
        const [positions] = await onBackend(backend, () => slice(tf.range(0, size).reshape(shape)));
        const w = randomData(positions.values.length, 70);
        const x = randomData(size, 71);
        const [g] = await onBackend(
          backend,
          () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(slice(t), tf.tensor(w, positions.shape))))(tf.tensor(x, shape)),
        );
        expectClose(`stridedSlice grad ${backend} ${label}`, g, {
          shape,
          values: bruteGather(size, positions.values, w),
        }, 1e-6);
      });
    }
  }
});

describe("GatherNd gradient", () => {
  for (const backend of backends) {
    for (
      const [label, indices, idxShape] of [
        ["rows, repeated", [1, 3, 1], [3, 1]],
        ["elements, repeated", [0, 1, 2, 2, 0, 1], [3, 2]],
      ] as Array<[string, number[], number[]]>
    ) {
      it(`is right on ${backend} for ${label}`, async () => {
        const gatherNd = (t: tf.Tensor) => tf.gatherND(t, tf.tensor(indices, idxShape, "int32"));
        const [positions] = await onBackend(backend, () => gatherNd(tf.range(0, 12).reshape([4, 3])));
        const w = randomData(positions.values.length, 80);
        const [g] = await onBackend(
          backend,
          () =>
            tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gatherNd(t), tf.tensor(w, positions.shape))))(
              tf.tensor(randomData(12, 81), [4, 3]),
            ),
        );
        expectClose(`gatherND grad ${backend} ${label}`, g, {
          shape: [4, 3],
          values: bruteGather(12, positions.values, w),
        }, 1e-6);
      });
    }
  }
});

describe("comparison and logical ops in a differentiated condition", () => {
  for (const backend of backends) {
    it(`give zero gradient on ${backend}, so where(cond(x), x², 3x) differentiates`, async () => {
      const x = randomData(40, 90);
      const f = (t: tf.Tensor) => {
        const inBand = tf.logicalAnd(tf.greater(t, -0.5), tf.less(t, 0.5));
        const edge = tf.logicalOr(tf.equal(t, tf.scalar(x[0])), tf.logicalNot(tf.notEqual(t, tf.scalar(x[1]))));
        const cond = tf.logicalOr(tf.logicalAnd(inBand, tf.lessEqual(t, 0.4)), edge);
        return tf.sum(tf.where(cond, tf.square(t), tf.mul(t, 3)));
      };
      const [g] = await onBackend(backend, () => tf.grad(f)(tf.tensor1d(x)));
      const expected = x.map((v, i) => ((v > -0.5 && v < 0.5 && v <= 0.4) || i < 2 ? 2 * v : 3));
      expectClose(`where grad ${backend}`, g, { shape: [40], values: expected }, 1e-6);
    });
  }
});

describe("Sum and Mean gradients", () => {
  const shape = [3, 4, 5];
  const x = randomData(60, 8);
  const w = randomData(60, 9); // a weighting, so each position's gradient differs
  for (const backend of backends) {
    for (const [label, axis] of [["axis 1", 1], ["axes [0, 2]", [0, 2]], ["all axes", undefined], ["axis -1", -1]] as const) {
      it(`broadcast dy exactly as the stock ones-product on ${backend}, ${label}`, async () => {
        const [sumGot, meanGot, sumStock, meanStock] = await onBackend(backend, () => {
          const input = tf.tensor(x, shape);
          const weights = tf.tensor(w, shape);
          const reduced = (f: (t: tf.Tensor) => tf.Tensor) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.sin(f(tf.mul(t, weights))), 1)))(input);
          const sumGrad = reduced((t) => tf.sum(t, axis as number | number[] | undefined, true));
          const meanGrad = reduced((t) => tf.mean(t, axis as number | number[] | undefined, true));
          // The stock formulas: dy reshaped, times ones of x's shape (and / count for Mean), chained by hand.
          const axes = tf.util.parseAxisParam(axis as number | number[], shape);
          const count = axes.reduce((n, a) => n * shape[a], 1);
          const chain = (keep: tf.Tensor, scale: number) => {
            const dy = tf.cos(keep);
            const spread = tf.mul(dy, tf.ones(shape));
            return tf.mul(scale === 1 ? spread : tf.div(spread, scale), weights);
          };
          const sumStock = chain(tf.sum(tf.mul(input, weights), axis as number | number[] | undefined, true), 1);
          const meanStock = chain(tf.mean(tf.mul(input, weights), axis as number | number[] | undefined, true), count);
          return [sumGrad, meanGrad, sumStock, meanStock];
        });
        expect(sumGot.shape).toEqual(shape);
        expect(Array.from(sumGot.values)).toEqual(Array.from(sumStock.values));
        expect(Array.from(meanGot.values)).toEqual(Array.from(meanStock.values));
      });
    }
  }
});

describe("Relu gradient", () => {
  const x = Array.from(randomData(60, 10), (v, i) => (i % 7 === 0 ? 0 : v)); // some exact zeros: step(0) = 0
  const w = randomData(60, 11);
  for (const backend of backends) {
    it(`is dy · step(x), the stock cast's bits, on ${backend}`, async () => {
      const [got, stock] = await onBackend(backend, () => {
        const input = tf.tensor(x, [6, 10]);
        const weights = tf.tensor(w, [6, 10]);
        const got = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.relu(t), weights)))(input);
        const stock = tf.mul(weights, tf.cast(tf.step(input), "float32")); // the stock formula, dy = weights
        return [got, stock];
      });
      expect(Array.from(got.values)).toEqual(Array.from(stock.values));
      expect(got.values.some((v, i) => v === 0 && w[i] !== 0)).toBe(true); // the mask did zero something
    });
  }
});
