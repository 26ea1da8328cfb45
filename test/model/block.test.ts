/**
 * Block-level properties the statistics rely on (docs/METHOD.md §2, docs/DESIGN.md
 * "Models"): the linear-input hook sees the linears in `linears()` order with
 * their declared widths; for every linear the weight gradient equals
 * `Xᵀ γ` (γ = the probe gradient), the KFAC identity; a DRD-factored linear
 * computes `x U V`; and misuse fails with a clear error.
 */
import type { Tensor } from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { loadBlockWeights, loadOuterWeights, resolveModel } from "../../src/model/load.ts";
import type { Architecture, ModelConfig, WeightMap } from "../../src/model/types.ts";
import { blockVjp } from "../../src/model/vjp.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { fixtureDir, readGolden } from "./golden.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

interface Fixture {
  arch: Architecture;
  cfg: ModelConfig;
  outer: WeightMap;
  block: WeightMap;
  ids: Tensor;
  x: Tensor;
}

async function fixture(name: string): Promise<Fixture> {
  const reader = await openCheckpoint(fixtureDir(name));
  try {
    const { arch, cfg } = resolveModel(reader);
    const outer = await loadOuterWeights(reader, arch, cfg);
    const block = await loadBlockWeights(reader, arch, cfg, 0);
    const ids = tf.tensor2d(readGolden(name).input_ids, undefined, "int32");
    return { arch, cfg, outer, block, ids, x: arch.embed(outer, ids, cfg) };
  } finally {
    await reader.close();
  }
}

function release(f: Fixture): void {
  tf.dispose([f.ids, f.x, ...f.outer.values(), ...f.block.values()]);
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe("block functions", () => {
  for (const name of ["opt", "gpt2", "llama"]) {
    it(`${name}: the hook sees each linear once, in linears() order, with its input width`, async () => {
      const f = await fixture(name);
      const seen: Array<[string, number[]]> = [];
      const y = f.arch.block(f.block, f.x, f.cfg, { onLinearInput: (n, x) => seen.push([n, x.shape]) });
      const [b, t] = f.ids.shape;
      expect(seen).toEqual(f.arch.linears(f.cfg).map((s) => [s.name, [b, t, s.inFeatures]]));
      y.dispose();
      release(f);
    });

    it(`${name}: every linear's weight gradient is Xᵀγ and its bias gradient Σγ`, async () => {
      const f = await fixture(name);
      const before = tf.memory().numTensors;
      const specs = f.arch.linears(f.cfg);
      const [b, t] = f.ids.shape;
      const probes = new Map(specs.map((s) => [s.name, tf.zeros([b, t, s.outFeatures])]));
      const inputs = new Map<string, Tensor>();
      const dy = tf.randomNormal(f.x.shape, 0, 1, "float32", 5);
      const { dx, dWeights, dProbes } = blockVjp(f.arch, f.cfg, f.block, f.x, dy, {
        probes,
        onLinearInput: (n, x) => inputs.set(n, tf.keep(tf.clone(x))),
      });
      expect(dx.shape).toEqual(f.x.shape);
      for (const s of specs) {
        const gamma = tf.reshape(dProbes!.get(s.name)!, [b * t, s.outFeatures]); // [N, out]
        const xIn = tf.reshape(inputs.get(s.name)!, [b * t, s.inFeatures]); // [N, in]
        const expected = tf.matMul(xIn, gamma, true, false); // [in, out]
        const got = dWeights.get(`${s.name}.weight`)!;
        const scale = tf.tidy(() => tf.max(tf.abs(expected)).dataSync()[0]);
        expect(scale).toBeGreaterThan(0);
        expect(maxAbsDiff(got, expected)).toBeLessThan(1e-5 * scale + 1e-7);
        if (s.hasBias) {
          const sum = tf.sum(gamma, 0);
          expect(maxAbsDiff(dWeights.get(`${s.name}.bias`)!, sum)).toBeLessThan(1e-5 * scale + 1e-7);
          sum.dispose();
        }
        tf.dispose([gamma, xIn, expected]);
      }
      // The MLP's output linear adds straight into the residual stream: γ = dy.
      const last = specs[specs.length - 1].name;
      expect(maxAbsDiff(dProbes!.get(last)!, dy)).toBeLessThan(1e-6);
      tf.dispose([dx, dy, ...dWeights.values(), ...dProbes!.values(), ...probes.values(), ...inputs.values()]);
      expect(tf.memory().numTensors).toBe(before);
      release(f);
    });
  }

  for (const [name, factored] of [["opt", false], ["gpt2", false], ["llama", false], ["llama", true]] as const) {
    it(`${name}${factored ? " (factored q_proj)" : ""}: replaying the forward's linear outputs gives the VJP bit for bit`, async () => {
      const f = await fixture(name);
      const block = new Map(f.block);
      if (factored) {
        const [d, out] = block.get("self_attn.q_proj.weight")!.shape;
        block.set("self_attn.q_proj.weight_u", tf.randomNormal([d, 5], 0, 0.3, "float32", 1));
        block.set("self_attn.q_proj.weight_v", tf.randomNormal([5, out], 0, 0.3, "float32", 2));
        block.delete("self_attn.q_proj.weight");
      }
      const before = tf.memory().numTensors;
      const specs = f.arch.linears(f.cfg);
      const [b, t] = f.ids.shape;
      const outputs = new Map<string, Tensor>(); // [B, T, out] per linear
      tf.dispose(f.arch.block(block, f.x, f.cfg, { onLinearOutput: (n, y) => outputs.set(n, tf.keep(tf.clone(y))) }));
      expect([...outputs.keys()]).toEqual(specs.map((s) => s.name));
      const dy = tf.randomNormal(f.x.shape, 0, 1, "float32", 5);
      const vjp = (replay?: Map<string, Tensor>) => {
        const probes = new Map(specs.map((s) => [s.name, tf.zeros([b, t, outputs.get(s.name)!.shape[2]])]));
        const result = blockVjp(f.arch, f.cfg, block, f.x, dy, { wrt: [], probes, ...(replay ? { replay } : {}) });
        tf.dispose([...probes.values()]);
        return result;
      };
      const recomputed = vjp();
      const replayed = vjp(outputs);
      expect(replayed.dx.dataSync()).toEqual(recomputed.dx.dataSync());
      for (const s of specs) expect(replayed.dProbes!.get(s.name)!.dataSync()).toEqual(recomputed.dProbes!.get(s.name)!.dataSync());
      // A replay that differs from the product is what the VJP uses: values downstream of it change.
      const skewed = new Map(outputs).set(specs[0].name, tf.mul(outputs.get(specs[0].name)!, 2));
      const off = vjp(skewed);
      expect(maxAbsDiff(off.dx, recomputed.dx)).toBeGreaterThan(1e-6);
      expect(() => blockVjp(f.arch, f.cfg, block, f.x, dy, { replay: outputs })).toThrow("pass wrt: [] with replay");
      for (const r of [recomputed, replayed, off]) tf.dispose([r.dx, ...r.dProbes!.values()]);
      tf.dispose([dy, skewed.get(specs[0].name)!, ...outputs.values()]);
      expect(tf.memory().numTensors).toBe(before);
      if (factored) tf.dispose([block.get("self_attn.q_proj.weight_u")!, block.get("self_attn.q_proj.weight_v")!]);
      release(f);
    });
  }

  it("a DRD-factored linear (weight_u, weight_v) computes x U V", async () => {
    const f = await fixture("llama");
    const [d, out] = f.block.get("self_attn.q_proj.weight")!.shape;
    const u = tf.randomNormal([d, 5], 0, 0.3, "float32", 1);
    const v = tf.randomNormal([5, out], 0, 0.3, "float32", 2);
    const full = new Map(f.block).set("self_attn.q_proj.weight", tf.matMul(u, v));
    const factored = new Map(f.block).set("self_attn.q_proj.weight_u", u).set("self_attn.q_proj.weight_v", v);
    factored.delete("self_attn.q_proj.weight");
    const yFull = f.arch.block(full, f.x, f.cfg);
    const yFactored = f.arch.block(factored, f.x, f.cfg);
    const yOriginal = f.arch.block(f.block, f.x, f.cfg);
    expect(maxAbsDiff(yFull, yFactored)).toBeLessThan(1e-5);
    expect(maxAbsDiff(yOriginal, yFactored)).toBeGreaterThan(1e-2);
    factored.delete("self_attn.q_proj.weight_v");
    expect(() => f.arch.block(factored, f.x, f.cfg)).toThrow(
      'Block weights lack "self_attn.q_proj.weight" (or its factors "self_attn.q_proj.weight_u" and "self_attn.q_proj.weight_v")',
    );
    tf.dispose([u, v, full.get("self_attn.q_proj.weight")!, yFull, yFactored, yOriginal]);
    release(f);
  });

  it("refuses out-of-vocabulary ids, over-long sequences and mistral beyond its sliding window", async () => {
    const f = await fixture("llama");
    const bad = tf.tensor2d([[1, 2, 256]], undefined, "int32");
    expect(() => f.arch.embed(f.outer, bad, f.cfg)).toThrow(
      "Token id 256 at [0, 2] is outside the vocabulary (size 256)",
    );
    const long = tf.zeros([1, 65], "int32");
    expect(() => f.arch.embed(f.outer, long, f.cfg)).toThrow("Sequence length 65 exceeds the model's 64 positions");
    const mistral = f.arch.parseConfig({ ...f.cfg.raw, model_type: "mistral", sliding_window: 4 });
    expect(mistral.modelType).toBe("mistral");
    expect(() => f.arch.block(f.block, f.x, mistral)).toThrow(
      "Sequence length 9 exceeds sliding_window 4; sliding-window attention is not implemented",
    );
    tf.dispose([bad, long]);
    release(f);
  });
});
