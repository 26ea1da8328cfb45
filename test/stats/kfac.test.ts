import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { accumulateKfac, finalizeKfac, mergeKfac } from "../../src/stats/kfac.ts";
import { at, maxAbs, maxAbsDiff, normalRng, randomMatrix } from "../score/reference.ts";

/** Rows `[from, to)` of a matrix. */
function rowSlice(m: Matrix, from: number, to: number): Matrix {
  return { rows: to - from, cols: m.cols, data: m.data.slice(from * m.cols, to * m.cols) };
}

/** Brute force: per-token outer products summed in float64, divided by N. */
function bruteForce(x: Matrix, gamma: Matrix, scale: number, bias: boolean) {
  const n = x.rows;
  const inAug = x.cols + (bias ? 1 : 0);
  const out = gamma.cols;
  const A = new Float64Array(inAug * inAug);
  const G = new Float64Array(out * out);
  const g = new Float64Array(inAug * out);
  for (let t = 0; t < n; t++) {
    const xt = Array.from({ length: inAug }, (_, i) => (i < x.cols ? at(x, t, i) : 1));
    const gt = Array.from({ length: out }, (_, j) => scale * at(gamma, t, j));
    for (let i = 0; i < inAug; i++) {
      for (let j = 0; j < inAug; j++) A[i * inAug + j] += xt[i] * xt[j] / n;
      for (let j = 0; j < out; j++) g[i * out + j] += xt[i] * gt[j] / n;
    }
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < out; j++) G[i * out + j] += gt[i] * gt[j] / n;
    }
  }
  return { A, G, g };
}

describe("KFAC statistics", () => {
  const rng = normalRng(7);
  const n = 37;
  const x = randomMatrix(n, 6, rng);
  const gamma = randomMatrix(n, 4, rng);

  for (const bias of [false, true]) {
    it(`equal brute-force per-token outer products (bias ${bias}, gradScale 3)`, () => {
      const f = finalizeKfac(accumulateKfac(undefined, x, gamma, { gradScale: 3, bias }));
      const ref = bruteForce(x, gamma, 3, bias);
      const inAug = 6 + (bias ? 1 : 0);
      expect([f.A.size, f.G.size, f.g.rows, f.g.cols]).toEqual([inAug, 4, inAug, 4]);
      expect(f.tokens).toBe(n);
      expect(maxAbsDiff(f.A.dense().data, ref.A)).toBeLessThan(1e-5 * maxAbs(ref.A));
      expect(maxAbsDiff(f.G.dense().data, ref.G)).toBeLessThan(1e-5 * maxAbs(ref.G));
      expect(maxAbsDiff(f.g.data, ref.g)).toBeLessThan(1e-5 * maxAbs(ref.g));
    });
  }

  it("give the same factors streamed in chunks as all at once", () => {
    const whole = finalizeKfac(accumulateKfac(undefined, x, gamma, { bias: true }));
    let state = accumulateKfac(undefined, rowSlice(x, 0, 5), rowSlice(gamma, 0, 5), { bias: true });
    for (const [from, to] of [[5, 6], [6, 20], [20, n]]) {
      state = accumulateKfac(state, rowSlice(x, from, to), rowSlice(gamma, from, to));
    }
    const streamed = finalizeKfac(state);
    expect(streamed.tokens).toBe(n);
    expect(maxAbsDiff(streamed.A.dense().data, whole.A.dense().data)).toBeLessThan(1e-6 * maxAbs(whole.A.dense().data));
    expect(maxAbsDiff(streamed.G.dense().data, whole.G.dense().data)).toBeLessThan(1e-6 * maxAbs(whole.G.dense().data));
    expect(maxAbsDiff(streamed.g.data, whole.g.data)).toBeLessThan(1e-6 * maxAbs(whole.g.data));
  });

  it("merge disjoint token sets exactly like one stream", () => {
    const whole = finalizeKfac(accumulateKfac(undefined, x, gamma));
    const a = accumulateKfac(undefined, rowSlice(x, 0, 11), rowSlice(gamma, 0, 11));
    const b = accumulateKfac(undefined, rowSlice(x, 11, n), rowSlice(gamma, 11, n));
    const merged = finalizeKfac(mergeKfac(a, b));
    expect(merged.tokens).toBe(n);
    expect(maxAbsDiff(merged.A.dense().data, whole.A.dense().data)).toBeLessThan(1e-6 * maxAbs(whole.A.dense().data));
    expect(maxAbsDiff(merged.g.data, whole.g.data)).toBeLessThan(1e-6 * maxAbs(whole.g.data));
  });

  it("yield the gradient of the mean loss when gradScale undoes a batch mean", () => {
    // ℓ = (1/N) Σ_t ½‖x_t Wk − z_t‖²; a backward over that mean gives γ_t / N.
    const w = randomMatrix(6, 4, rng); // [in, out]
    const z = randomMatrix(n, 4, rng);
    const meanGrad = new Float32Array(n * 4); // ∂ℓ/∂y_t = (y_t − z_t) / N
    for (let t = 0; t < n; t++) {
      for (let o = 0; o < 4; o++) {
        let y = 0;
        for (let i = 0; i < 6; i++) y += at(x, t, i) * at(w, i, o);
        meanGrad[t * 4 + o] = (y - at(z, t, o)) / n;
      }
    }
    const f = finalizeKfac(
      accumulateKfac(undefined, x, { rows: n, cols: 4, data: meanGrad }, { gradScale: n }),
    );
    const loss = (wk: Float32Array) => {
      let s = 0;
      for (let t = 0; t < n; t++) {
        for (let o = 0; o < 4; o++) {
          let y = 0;
          for (let i = 0; i < 6; i++) y += at(x, t, i) * wk[i * 4 + o];
          s += 0.5 * (y - at(z, t, o)) ** 2;
        }
      }
      return s / n;
    };
    const h = 1e-2;
    const numeric = Array.from({ length: 24 }, (_, k) => {
      const plus = Float32Array.from(w.data);
      const minus = Float32Array.from(w.data);
      plus[k] += h;
      minus[k] -= h;
      return (loss(plus) - loss(minus)) / (2 * h);
    });
    expect(maxAbsDiff(f.g.data, numeric)).toBeLessThan(1e-4 * maxAbs(numeric));
  });

  it("reject mismatched chunks with a clear message", () => {
    const state = accumulateKfac(undefined, x, gamma);
    expect(() => accumulateKfac(state, randomMatrix(3, 5, rng), randomMatrix(3, 4, rng)))
      .toThrow("KFAC chunk is [5 in, 4 out] but the state was started for [6 in, 4 out]");
    expect(() => accumulateKfac(undefined, x, rowSlice(gamma, 0, 3)))
      .toThrow(`KFAC input x has ${n} tokens but output gradient gamma has 3`);
    expect(() => accumulateKfac(state, x, gamma, { bias: true })).toThrow("bias option");
    expect(() => accumulateKfac(undefined, x, gamma, { gradScale: 0 })).toThrow("gradScale");
    const nan = Float32Array.from(x.data);
    nan[8] = NaN;
    const bad = accumulateKfac(undefined, { rows: n, cols: 6, data: nan }, gamma);
    expect(() => finalizeKfac(bad)).toThrow("KFAC factor A has a non-finite entry NaN at (0, 2)");
  });

  it("share one input factor between linears fed the same inputs (q, k, v), with their own G and g", () => {
    const gammaK = randomMatrix(n, 4, rng);
    const alone = finalizeKfac(accumulateKfac(accumulateKfac(undefined, rowSlice(x, 0, 9), rowSlice(gammaK, 0, 9), { bias: true }), rowSlice(x, 9, n), rowSlice(gammaK, 9, n)));
    let q = accumulateKfac(undefined, rowSlice(x, 0, 9), rowSlice(gamma, 0, 9), { bias: true });
    let k = accumulateKfac(undefined, rowSlice(x, 0, 9), rowSlice(gammaK, 0, 9), { bias: true, inputOf: q });
    q = accumulateKfac(q, rowSlice(x, 9, n), rowSlice(gamma, 9, n));
    k = accumulateKfac(k, rowSlice(x, 9, n), rowSlice(gammaK, 9, n));
    expect(() => finalizeKfac(k)).toThrow("finalize that one first");
    const fq = finalizeKfac(q);
    const fk = finalizeKfac(k);
    expect(fk.A).toBe(fq.A); // one factor, not a copy
    expect(fk.A.dense().data).toEqual(alone.A.dense().data);
    expect(fk.G.dense().data).toEqual(alone.G.dense().data);
    expect(fk.g.data).toEqual(alone.g.data);
  });

  it("refuse input sharing across widths, bias or token counts", () => {
    const q = accumulateKfac(undefined, x, gamma);
    expect(() => accumulateKfac(undefined, x, gamma, { bias: true, inputOf: q })).toThrow("cannot share");
    const k = accumulateKfac(undefined, rowSlice(x, 0, 5), rowSlice(gamma, 0, 5), { inputOf: q });
    finalizeKfac(q);
    expect(() => finalizeKfac(k)).toThrow(`KFAC state saw 5 tokens but the state whose input factor it shares saw ${n}`);
    const lone = accumulateKfac(undefined, x, gamma);
    const shared = accumulateKfac(undefined, x, gamma, { inputOf: accumulateKfac(undefined, x, gamma) });
    expect(() => mergeKfac(lone, shared)).toThrow("shares its input factor with one that does not");
  });

  it("sum no gradient with gradient: false, and the same A and G bit for bit", () => {
    const withG = finalizeKfac(accumulateKfac(accumulateKfac(undefined, rowSlice(x, 0, 9), rowSlice(gamma, 0, 9), { bias: true }), rowSlice(x, 9, n), rowSlice(gamma, 9, n)));
    let state = accumulateKfac(undefined, rowSlice(x, 0, 9), rowSlice(gamma, 0, 9), { bias: true, gradient: false });
    expect(state.xg).toBeUndefined(); // no [in', out] buffer held
    expect(() => accumulateKfac(state, rowSlice(x, 9, n), rowSlice(gamma, 9, n), { gradient: true })).toThrow("KFAC gradient option true differs from the state's (false)");
    state = accumulateKfac(state, rowSlice(x, 9, n), rowSlice(gamma, 9, n));
    const withoutG = finalizeKfac(state);
    expect("g" in withoutG).toBe(false);
    expect(withoutG.A.dense().data).toEqual(withG.A.dense().data);
    expect(withoutG.G.dense().data).toEqual(withG.G.dense().data);
    expect(withoutG.tokens).toBe(n);
    const lone = accumulateKfac(undefined, x, gamma);
    expect(() => mergeKfac(lone, accumulateKfac(undefined, x, gamma, { gradient: false }))).toThrow("sums its gradient g with one that does not");
  });

  it("consume the state when finalized", () => {
    const state = accumulateKfac(undefined, x, gamma);
    finalizeKfac(state);
    expect(() => finalizeKfac(state)).toThrow("already finalized");
    expect(() => accumulateKfac(state, x, gamma)).toThrow("already finalized");
  });

  // Wide factors (SCP's G₁ and A₂) may be held as rows while N < side; they
  // must equal the dense factors, through chunking, merging and the switch
  // to dense once the rows would outnumber the side.
  const wideX = randomMatrix(n, 80, rng); // side 80 (81 with bias) ≥ 2n, n = 37 tokens
  const wideGamma = randomMatrix(n, 75, rng);
  for (const bias of [false, true]) {
    it(`hold wide factors as rows with the same A, G, column sums and g (bias ${bias})`, () => {
      const dense = finalizeKfac(accumulateKfac(undefined, wideX, wideGamma, { bias, gradScale: 2 }));
      let state = accumulateKfac(undefined, rowSlice(wideX, 0, 9), rowSlice(wideGamma, 0, 9), {
        bias, gradScale: 2, rowHeld: { A: true, G: true },
      });
      state = accumulateKfac(state, rowSlice(wideX, 9, n), rowSlice(wideGamma, 9, n), { gradScale: 2 });
      expect(state.xx.kind).toBe("rows");
      expect(state.gg.kind).toBe("rows");
      const rows = finalizeKfac(state);
      for (const key of ["A", "G"] as const) {
        const ref = dense[key].dense().data;
        expect(maxAbsDiff(rows[key].dense().data, ref)).toBeLessThan(1e-5 * maxAbs(ref));
        const sums = dense[key].columnAbsSums();
        expect(maxAbsDiff(rows[key].columnAbsSums(), sums)).toBeLessThan(1e-5 * maxAbs(sums));
      }
      expect(maxAbsDiff(rows.g.data, dense.g.data)).toBeLessThan(1e-5 * maxAbs(dense.g.data));
    });
  }

  it("turn a row-held factor dense once its rows would outnumber half its side, and merge either kind", () => {
    const narrow = { rowHeld: { A: true, G: true } }; // x is 6 wide, gamma 4: dense after the first chunk
    let s = accumulateKfac(undefined, rowSlice(x, 0, 2), rowSlice(gamma, 0, 2), narrow);
    expect([s.xx.kind, s.gg.kind]).toEqual(["rows", "rows"]);
    s = accumulateKfac(s, rowSlice(x, 2, 8), rowSlice(gamma, 2, 8));
    expect([s.xx.kind, s.gg.kind]).toEqual(["dense", "dense"]);
    const rowsPart = accumulateKfac(undefined, rowSlice(x, 8, 10), rowSlice(gamma, 8, 10), narrow);
    const densePart = accumulateKfac(undefined, rowSlice(x, 10, n), rowSlice(gamma, 10, n));
    const merged = finalizeKfac(mergeKfac(mergeKfac(s, rowsPart), densePart));
    const whole = finalizeKfac(accumulateKfac(undefined, x, gamma));
    for (const key of ["A", "G"] as const) {
      // A factor that began row-held keeps only its column L1 norms once dense.
      expect(merged[key].held.kind).toBe("columns");
      expect(() => merged[key].dense()).toThrow("keeps only its column L1 norms");
      const ref = whole[key].columnAbsSums();
      expect(maxAbsDiff(merged[key].columnAbsSums(), ref)).toBeLessThan(1e-5 * maxAbs(ref));
    }
    expect(merged.tokens).toBe(n);
  });

  it("names a non-finite entry of a factor finalized to its column norms", () => {
    const narrow = { rowHeld: { A: true, G: true } };
    const bad = { ...gamma, data: gamma.data.slice() };
    bad.data[3 * gamma.cols + 1] = Infinity;
    const s = accumulateKfac(accumulateKfac(undefined, rowSlice(x, 0, 2), rowSlice(bad, 0, 2), narrow), rowSlice(x, 2, n), rowSlice(bad, 2, n));
    expect(s.gg.kind).toBe("dense");
    expect(() => finalizeKfac(s)).toThrow(/KFAC factor G has a non-finite entry .* check the calibration inputs and gradients/);
  });

  for (const bias of [false, true]) {
    it(`sum A of non-negative inputs as its column L1 norms, in chunks and merged (bias ${bias})`, () => {
      const relu: Matrix = { ...x, data: x.data.map((v) => Math.max(v, 0)) }; // ReLU outputs: ≥ 0
      const options = { bias, nonNegativeInputs: true };
      const chunked = accumulateKfac(accumulateKfac(undefined, rowSlice(relu, 0, 5), rowSlice(gamma, 0, 5), options), rowSlice(relu, 5, n), rowSlice(gamma, 5, n));
      const other = accumulateKfac(undefined, rowSlice(relu, 0, 20), rowSlice(gamma, 0, 20), options);
      const merged = finalizeKfac(mergeKfac(other, accumulateKfac(undefined, rowSlice(relu, 20, n), rowSlice(gamma, 20, n), options)));
      const dense = finalizeKfac(accumulateKfac(undefined, relu, gamma, { bias }));
      const { A: ref } = bruteForce(relu, gamma, 1, bias);
      const side = x.cols + (bias ? 1 : 0);
      const refNorms = Array.from({ length: side }, (_, j) => {
        let sum = 0;
        for (let i = 0; i < side; i++) sum += Math.abs(ref[i * side + j]);
        return sum;
      });
      for (const f of [finalizeKfac(chunked), merged]) {
        expect(f.A.held.kind).toBe("columns");
        expect(f.A.size).toBe(side);
        expect(maxAbsDiff(f.A.columnAbsSums(), refNorms)).toBeLessThan(1e-6 * maxAbs(refNorms));
        expect(maxAbsDiff(f.A.columnAbsSums(), dense.A.columnAbsSums())).toBeLessThan(1e-6 * maxAbs(refNorms));
        // G and g as without (chunked sums round apart in the last place)
        expect(maxAbsDiff(f.G.dense().data, dense.G.dense().data)).toBeLessThan(1e-6 * maxAbs(dense.G.dense().data));
        expect(maxAbsDiff(f.g!.data, dense.g!.data)).toBeLessThan(1e-6 * maxAbs(dense.g!.data));
      }
    });
  }

  it("refuses a negative input declared non-negative, and merging column sums with a Gram", () => {
    expect(() => accumulateKfac(undefined, x, gamma, { nonNegativeInputs: true })).toThrow(/input -?[\d.e-]+ at \(\d+, \d+\) is negative/);
    const relu: Matrix = { ...x, data: x.data.map((v) => Math.max(v, 0)) };
    const columns = accumulateKfac(undefined, relu, gamma, { nonNegativeInputs: true });
    expect(() => mergeKfac(columns, accumulateKfac(undefined, relu, gamma))).toThrow("held as column sums");
  });
});
