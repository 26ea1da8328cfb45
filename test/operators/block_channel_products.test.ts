// `BlockChannelProducts`: a block's ReLU-MLP channel products from the backward's chunk
// records (fc1's γ paired with fc2's x of the same chunk, in chunk order), nothing for a
// GELU MLP, and clear errors when the records do not pair.
import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import { architectureFor } from "../../src/model/registry.ts";
import type { LinearSpec } from "../../src/model/types.ts";
import { BlockChannelProducts } from "../../src/operators/block_channel_products.ts";
import type { LinearChunkRecord } from "../../src/records/records.ts";
import { accumulateChannelProducts, finalizeChannelProducts } from "../../src/stats/channel_products.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { normalRng, randomMatrix } from "../score/reference.ts";

const opt = architectureFor("opt");
const cfg = opt.parseConfig(optConfigJson({ layers: 2, hidden: 8, heads: 2, ffn: 12, maxPositions: 32, vocabSize: 16, bosId: 2, eosId: 2, padId: 1 }));
const specs = new Map(opt.linears(cfg).map((s) => [s.name, s]));
const rng = normalRng(9);

/** A chunk record of `spec` with random `x` `[n, in]` and `γ` `[n, out]`. */
function record(spec: LinearSpec, n: number, index = 1): Omit<LinearChunkRecord, "kind"> {
  return { index, linear: spec, x: randomMatrix(n, spec.inFeatures, rng), gamma: randomMatrix(n, spec.outFeatures, rng), gradScale: 1 };
}

/** One chunk's records in `arch.linears` order. */
const chunk = (n: number, index = 1) => [...specs.values()].map((s) => record(s, n, index));

describe("BlockChannelProducts", () => {
  it("adds each chunk's fc2 input times its fc1 γ, in chunk order", () => {
    const chunks = [chunk(5), chunk(3)];
    const products = new BlockChannelProducts();
    for (const c of chunks) c.forEach((r) => products.add(r));
    let expected: ReturnType<typeof accumulateChannelProducts> | undefined;
    for (const c of chunks) {
      const [fc1, fc2] = ["fc1", "fc2"].map((name) => c.find((r) => r.linear.name === name)!);
      expected = accumulateChannelProducts(expected, fc2.x, fc1.gamma);
    }
    const got = products.finalize(1)!;
    expect(got).toEqual(finalizeChannelProducts(expected!));
    expect(got.tokens).toBe(8);
    expect(products.finalize(0)).toBeUndefined(); // started again empty
  });

  it("sums nothing for an MLP that is not ReLU", () => {
    const gpt2 = architectureFor("gpt2");
    const gcfg = gpt2.parseConfig({ model_type: "gpt2", n_embd: 8, n_head: 2, n_layer: 2, n_positions: 32, vocab_size: 16 });
    const products = new BlockChannelProducts();
    for (const spec of gpt2.linears(gcfg)) products.add(record(spec, 4));
    expect(products.finalize(1)).toBeUndefined();
  });

  it("names records that do not pair", () => {
    const [fc1, fc2] = [specs.get("fc1")!, specs.get("fc2")!];
    const products = new BlockChannelProducts();
    expect(() => products.add(record(fc2, 3))).toThrow(`block 1 sent a chunk of "fc2" without its channel producer's chunk before it`);
    products.clear();
    products.add(record(fc1, 3));
    expect(() => products.add(record(fc1, 3))).toThrow(`block 1 sent a chunk of "fc1" before the consumer's chunk matching the last one`);
    products.clear();
    products.add(record(fc1, 3));
    expect(() => products.add(record(fc2, 3, 2))).toThrow("chunks of block 2 arrived before block 1 closed");
    expect(() => products.finalize(1)).toThrow(`block 1 closed with a chunk of "fc1" and none of its consumer`);
    const short: Matrix = randomMatrix(2, fc2.inFeatures, rng);
    products.clear();
    products.add(record(fc1, 3));
    expect(() => products.add({ ...record(fc2, 3), x: short })).toThrow("the consumer input h is [2, 12] but the producer output gradient gamma is [3, 12]");
  });
});
