import { beforeAll, describe, expect, it } from "vitest";
import { tf } from "../../src/tensor/backend.ts";
import { benchMatmul } from "../../src/bench/kernels.ts";
import { startWasm } from "../tensor/parity.ts";

beforeAll(startWasm);

describe("benchMatmul", () => {
  it("reports the plain product and each transposed form, fixed and stock, on wasm", async () => {
    await tf.setBackend("cpu");
    const rows = await benchMatmul({ shapes: [{ name: "tiny", m: 24, k: 16, n: 20 }], repeats: 1 });
    expect(tf.getBackend()).toBe("cpu"); // the active backend is restored
    expect(rows.map((r) => r.name)).toEqual([
      "wasm matMul NN tiny",
      "wasm matMul NT tiny fixed",
      "wasm matMul NT tiny stock",
      "wasm matMul TN tiny fixed",
      "wasm matMul TN tiny stock",
      "wasm matMul TT tiny fixed",
      "wasm matMul TT tiny stock",
    ]);
    for (const row of rows) {
      expect(row.unit).toBe("GFLOP/s");
      expect(Number.isFinite(row.value) && row.value > 0).toBe(true);
    }
    expect(rows[1].note).toMatch(/^\d+\.\dx the stock kernel$/);
  });

  it("leaves the stock rows out when stockRepeats is 0", async () => {
    const rows = await benchMatmul({ shapes: [{ name: "tiny", m: 8, k: 8, n: 8 }], repeats: 1, stockRepeats: 0 });
    expect(rows.map((r) => r.name)).toEqual([
      "wasm matMul NN tiny",
      "wasm matMul NT tiny fixed",
      "wasm matMul TN tiny fixed",
      "wasm matMul TT tiny fixed",
    ]);
  });

  it("rejects a non-positive size naming the shape", async () => {
    await expect(benchMatmul({ shapes: [{ name: "bad", m: 0, k: 2, n: 2 }] })).rejects.toThrow(
      /benchMatmul: a dimension of "bad" is 0: expected an integer of at least 1/,
    );
  });
});
