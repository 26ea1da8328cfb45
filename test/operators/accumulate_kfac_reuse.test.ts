// accumulateKfac gives the backward's chunk arrays back for reuse once their
// chunk is done (src/linalg/scratch_arrays.ts): factors must not change when
// the next chunk's and block's arrays are the reused ones, and records of a
// chunk that come after another chunk's are refused, not read from reused
// memory.
import { from, lastValueFrom, Observable, toArray } from "rxjs";
import { describe, expect, test } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { takeScratch } from "../../src/linalg/scratch_arrays.ts";
import type { LinearSpec } from "../../src/model/types.ts";
import { accumulateKfac } from "../../src/operators/accumulate_kfac.ts";
import type { CalibrationEvent, ModelHandle, StatsRecord } from "../../src/records/records.ts";
import { factorNumbers } from "./calibration_fixture.ts";

const D = 4;
const M = 8;
const SPECS: LinearSpec[] = [
  { name: "q", role: "attn.q", inFeatures: D, outFeatures: D, hasBias: true },
  { name: "k", role: "attn.k", inFeatures: D, outFeatures: D, hasBias: true },
  { name: "fc1", role: "mlp.in", inFeatures: D, outFeatures: M, hasBias: true, reluChannels: true },
  { name: "fc2", role: "mlp.out", inFeatures: M, outFeatures: D, hasBias: true, reluChannels: true },
];
const ROWS = 3; // a row-held side-8 factor turns dense at its second chunk
const model = {} as ModelHandle;

/** Deterministic values of a chunk's array; `own` arrays are never pooled, else taken from the pool. */
function filled(length: number, seed: number, own: boolean): Matrix["data"] {
  const data = own ? new Float32Array(length) : takeScratch(length);
  for (let i = 0; i < length; i++) data[i] = Math.sin(seed + 0.61 * i);
  return data;
}

/** Two blocks of three chunks, each chunk's arrays made only when it is emitted, as the backward does. */
function backward(own: boolean, order: number[] = [0, 1, 2], blocks = [3, 2]): Observable<CalibrationEvent> {
  return new Observable<CalibrationEvent>((subscriber) => {
    for (const index of blocks) {
      for (const chunk of order) {
        const seed = 100 * index + 10 * chunk;
        const attnX: Matrix = { rows: ROWS, cols: D, data: filled(ROWS * D, seed, own) };
        const mlpX: Matrix = { rows: ROWS, cols: D, data: filled(ROWS * D, seed + 1, own) };
        const hidden: Matrix = { rows: ROWS, cols: M, data: filled(ROWS * M, seed + 2, own).map((v) => Math.max(v, 0)) };
        for (const linear of SPECS) {
          const x = linear.name === "k" || linear.name === "q" ? attnX : linear.name === "fc1" ? mlpX : hidden;
          const gamma: Matrix = { rows: ROWS, cols: linear.outFeatures, data: filled(ROWS * linear.outFeatures, seed + 3 + linear.name.length, own) };
          subscriber.next({
            kind: "chunk", index, linear, x, gamma, gradScale: 1, chunk,
            ...(linear.name === "k" ? { sharesInputWith: "q" } : {}),
          });
        }
      }
      subscriber.next({ kind: "block", model, index, role: "middle", weights: new Map() });
    }
    subscriber.complete();
  });
}

function factorsOf(records: StatsRecord[]) {
  return records.map((r) => ({
    stats: [...r.stats].map(([name, f]) => ({ name, kinds: [f.A.held.kind, f.G.held.kind], A: factorNumbers(f.A), G: factorNumbers(f.G), g: f.g && [...f.g.data] })),
    channels: r.channelProducts && [...r.channelProducts.mean],
  }));
}

describe("accumulateKfac with reused chunk arrays", () => {
  test("the factors of chunks made in reused memory equal those of chunks in their own", async () => {
    const expected = factorsOf(await lastValueFrom(backward(true).pipe(accumulateKfac(), toArray())));
    const reused = factorsOf(await lastValueFrom(backward(false).pipe(accumulateKfac(), toArray())));
    const again = factorsOf(await lastValueFrom(backward(false).pipe(accumulateKfac(), toArray())));
    expect(expected[0].stats.map((s) => [s.name, ...s.kinds])).toEqual([
      ["q", "dense", "dense"],
      ["k", "dense", "dense"],
      ["fc1", "dense", "columns"], // G turned dense at the second chunk: summed in reused memory
      ["fc2", "columns", "dense"], // A of ReLU outputs: column sums
    ]);
    expect(reused).toEqual(expected);
    expect(again).toEqual(expected);
    // The first block's factors outlive the second block's sums, made in the memory the pool had.
    const alone = factorsOf(await lastValueFrom(backward(true, [0, 1, 2], [3]).pipe(accumulateKfac(), toArray())));
    expect(expected[0]).toEqual(alone[0]);
  });

  test("a record of a chunk already done is refused", async () => {
    const late = from([...await lastValueFrom(backward(false, [0, 1]).pipe(toArray()))].flatMap((e, i, all) =>
      // chunk 0's first record once more, after chunk 1's
      i === SPECS.length * 2 ? [all[0], e] : [e]
    ));
    await expect(lastValueFrom(late.pipe(accumulateKfac(), toArray()))).rejects.toThrow(/chunk 0 after another chunk's/);
  });
});
