import { describe, expect, it } from "vitest";
import { type BlockBudget, type BlockLayout, planBudget } from "../../src/compress/budget.ts";
import { compressDrd } from "../../src/compress/drd.ts";
import { pruneMlp } from "../../src/compress/scp.ts";
import { svd } from "../../src/linalg/svd.ts";
import type { LinearSpec } from "../../src/model/types.ts";
import { normalRng, randomMatrix } from "../score/reference.ts";

function linear(name: string, role: LinearSpec["role"], inF: number, out: number, bias: boolean): LinearSpec {
  return { name, role, inFeatures: inF, outFeatures: out, hasBias: bias };
}

/** An OPT decoder block: 4 biased d×d projections, fc1/fc2 with biases, 2 LayerNorms. */
function optBlock(d: number, m: number): BlockLayout {
  return {
    linears: [
      linear("self_attn.q_proj", "attn.q", d, d, true),
      linear("self_attn.k_proj", "attn.k", d, d, true),
      linear("self_attn.v_proj", "attn.v", d, d, true),
      linear("self_attn.out_proj", "attn.out", d, d, true),
      linear("fc1", "mlp.in", d, m, true),
      linear("fc2", "mlp.out", m, d, true),
    ],
    otherParams: 4 * d,
  };
}

/** A LLaMA block with grouped-query attention (kv width `kv`), SwiGLU, no biases, 2 RMSNorms. */
function llamaBlock(d: number, kv: number, m: number): BlockLayout {
  return {
    linears: [
      linear("self_attn.q_proj", "attn.q", d, d, false),
      linear("self_attn.k_proj", "attn.k", d, kv, false),
      linear("self_attn.v_proj", "attn.v", d, kv, false),
      linear("self_attn.o_proj", "attn.out", d, d, false),
      linear("mlp.gate_proj", "mlp.gate", d, m, false),
      linear("mlp.up_proj", "mlp.up", d, m, false),
      linear("mlp.down_proj", "mlp.out", m, d, false),
    ],
    otherParams: 2 * d,
  };
}

/** Parameter count of a block, original or compressed, counted from the shapes directly. */
function countParams(layout: BlockLayout, budget?: BlockBudget): number {
  let n = layout.otherParams ?? 0;
  const width = budget?.width;
  for (const l of layout.linears) {
    const bias = l.hasBias ? l.outFeatures : 0;
    if (!budget) {
      n += l.inFeatures * l.outFeatures + bias;
    } else if (l.role.startsWith("attn.")) {
      const r = budget.ranks.get(l.name)!;
      const factors = r * (l.inFeatures + l.outFeatures);
      n += (factors < l.inFeatures * l.outFeatures ? factors : l.inFeatures * l.outFeatures) + bias;
    } else if (l.role === "mlp.out") {
      n += width! * l.outFeatures + bias;
    } else {
      n += l.inFeatures * width! + (l.hasBias ? width! : 0);
    }
  }
  return n;
}

describe("Emulator budget", () => {
  const layouts = [["OPT-1.3B", optBlock(2048, 8192)], ["LLaMA GQA", llamaBlock(1024, 256, 2752)]] as const;

  for (const [name, layout] of layouts) {
    for (const ratio of [0.2, 0.5, 0.8]) {
      for (const attnShare of [undefined, 0.15, 0.6]) {
        it(`hits ρ ${ratio} within 1% for ${name} (attnShare ${attnShare ?? "default"})`, () => {
          const [budget] = planBudget([layout], { ratio, attnShare });
          const original = countParams(layout);
          const params = countParams(layout, budget);
          expect(budget.originalParams).toBe(original);
          expect(budget.params).toBe(params);
          expect(Math.abs(params - ratio * original)).toBeLessThan(0.01 * ratio * original);
        });
      }
    }
  }

  it("by default keeps the same fraction of attention and MLP weights", () => {
    const d = 2048;
    const [budget] = planBudget([optBlock(d, 8192)], { ratio: 0.5 });
    const attnKept = (4 * budget.rank * 2 * d) / (4 * d * d);
    const mlpKept = budget.width / 8192;
    expect(Math.abs(attnKept - mlpKept)).toBeLessThan(0.01);
    expect(budget.rank).toBe(512); // r · 2d = 0.5 d²
  });

  it("leaves attention at full rank when attnShare is 0, and shifts the cut as attnShare grows", () => {
    const layout = optBlock(512, 2048);
    const [none] = planBudget([layout], { ratio: 0.7, attnShare: 0 });
    expect(none.rank).toBe(512);
    const [some] = planBudget([layout], { ratio: 0.7, attnShare: 0.3 });
    const [more] = planBudget([layout], { ratio: 0.7, attnShare: 0.6 });
    expect(some.rank).toBeLessThan(none.rank);
    expect(more.rank).toBeLessThan(some.rank);
    expect(more.width).toBeGreaterThan(some.width);
  });

  it("clamps each projection's rank to min(in, out)", () => {
    const [budget] = planBudget([llamaBlock(1024, 256, 2752)], { ratio: 0.9 });
    expect(budget.rank).toBeGreaterThan(256);
    expect(budget.ranks.get("self_attn.k_proj")).toBe(256);
    expect(budget.ranks.get("self_attn.q_proj")).toBe(budget.rank);
  });

  it("matches the parameters a compressed block actually stores", () => {
    const d = 24;
    const m = 96;
    const layout = optBlock(d, m);
    const [budget] = planBudget([layout], { ratio: 0.45 });
    const rng = normalRng(4);
    let stored = layout.otherParams ?? 0;
    for (const l of layout.linears.filter((x) => x.role.startsWith("attn."))) {
      const f = svd(randomMatrix(l.inFeatures, l.outFeatures, rng));
      const result = compressDrd(f, new Float32Array(f.s.length), budget.ranks.get(l.name)!);
      stored += l.outFeatures; // bias
      stored += result.kind === "lowRank"
        ? result.weightU.data.length + result.weightV.data.length
        : result.weight.data.length;
    }
    const pruned = pruneMlp({
      inputs: [{ weight: randomMatrix(d, m, rng), bias: new Float32Array(m) }],
      output: { weight: randomMatrix(m, d, rng), bias: new Float32Array(d) },
    }, Int32Array.from({ length: budget.width }, (_, j) => j));
    stored += pruned.inputs[0].weight.data.length + pruned.inputs[0].bias!.length;
    stored += pruned.output.weight.data.length + pruned.output.bias!.length;
    expect(stored).toBe(budget.params);
    expect(Math.abs(stored / budget.originalParams - 0.45)).toBeLessThan(0.02);
  });

  it("rejects an unreachable ratio and bad knobs with clear messages", () => {
    expect(() => planBudget([optBlock(64, 256)], { ratio: 0.01 })).toThrow(
      /^Budget ratio 0.01 is unreachable for block 0: rank 1 and width 1 already keep/,
    );
    expect(() => planBudget([optBlock(64, 256)], { ratio: 1.5 })).toThrow("Budget ratio must be in (0, 1], got 1.5");
    expect(() => planBudget([optBlock(64, 256)], { attnShare: -0.1 })).toThrow("attnShare must be in [0, 1]");
    const noMlp = { linears: optBlock(64, 256).linears.slice(0, 4) };
    expect(() => planBudget([noMlp])).toThrow("Budget block 0 needs attention linears");
  });

  describe("one part only (--only)", () => {
    for (const [name, layout] of [["OPT", optBlock(64, 256)], ["LLaMA GQA", llamaBlock(64, 16, 172)]] as const) {
      const original = countParams(layout);
      const attention = layout.linears.filter((l) => l.role.startsWith("attn."));

      it(`scp keeps attention at full rank and reaches ρ 0.5 with the MLP alone (${name})`, () => {
        const [b] = planBudget([layout], { ratio: 0.5, only: "scp" });
        for (const l of attention) expect(b.ranks.get(l.name)).toBe(Math.min(l.inFeatures, l.outFeatures));
        expect(countParams(layout, b)).toBe(b.params);
        expect(Math.abs(b.params / original - 0.5)).toBeLessThan(0.01);
        const both = planBudget([layout], { ratio: 0.5 })[0];
        expect(b.width).toBeLessThan(both.width); // the MLP pays for attention too
      });

      it(`drd keeps every MLP channel and reaches ρ 0.8 with attention alone (${name})`, () => {
        const [b] = planBudget([layout], { ratio: 0.8, only: "drd" });
        const mlpOut = layout.linears.find((l) => l.role === "mlp.out")!;
        expect(b.width).toBe(mlpOut.inFeatures);
        expect(countParams(layout, b)).toBe(b.params);
        expect(Math.abs(b.params / original - 0.8)).toBeLessThan(0.01);
      });
    }

    it("refuses a ratio the part alone cannot reach, naming the smallest one, and --attn-share with it", () => {
      // OPT: attention is a third of the weights, so DRD alone stops near 2/3.
      expect(() => planBudget([optBlock(64, 256)], { ratio: 0.5, only: "drd" })).toThrow(
        /^Budget ratio 0.5 \(--ratio\) is unreachable with --only drd for block 0: every MLP channel and attention at rank 1 already keep \d+ of \d+ parameters \(the smallest ratio is 0\.6[0-9]+\)$/,
      );
      expect(() => planBudget([optBlock(64, 256)], { ratio: 0.3, only: "scp" })).toThrow(
        /unreachable with --only scp for block 0: attention whole and one MLP channel already keep/,
      );
      expect(() => planBudget([optBlock(64, 256)], { ratio: 0.5, only: "scp", attnShare: 0.2 })).toThrow(
        "cannot be combined with only (--only scp)",
      );
    });
  });
});
