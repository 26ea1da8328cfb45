/**
 * `kfacOwners`: each linear's KFAC sums on one worker, linears sharing an
 * input together, the work about even (docs/DISTRIBUTED.md "How a GradOT
 * build uses the cores").
 */
import { describe, expect, test } from "vitest";
import { kfacOwners } from "../../src/distributed/kfac_owners.ts";
import { architectureFor } from "../../src/model/registry.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";

const arch = architectureFor("opt");
const cfg = arch.parseConfig(optConfigJson({ layers: 2, hidden: 768, heads: 12, ffn: 3072, maxPositions: 2048, vocabSize: 1024, bosId: 2, eosId: 2, padId: 1 }));
/** OPT's linears as the backward emits them: k and v read q's input. */
const groups = arch.linears(cfg).map((spec) => ({
  spec,
  ...(spec.name === "self_attn.k_proj" || spec.name === "self_attn.v_proj" ? { sharesInputWith: "self_attn.q_proj" } : {}),
}));

describe("kfacOwners", () => {
  test("one worker owns everything", () => {
    expect([...kfacOwners(groups, 1, 2032).values()]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test("two workers, few tokens: q, k and v on the first, out, fc1 and fc2 on the last (the least work)", () => {
    // Per token, in d² (d = 768, ffn 4d): {q, k, v} 5 (x γᵀ 3, G 3/2, one A 1/2), out 2,
    // fc1 1/2 (its A; no x γᵀ: a ReLU MLP's channel products are summed by the building
    // thread; G row-held: 1,536 tokens at most), fc2 1/2 (its G; its A, of ReLU outputs, is
    // summed as column sums: 2 · 3072 per token, 0.01 d²): greedy,
    // costliest first: 5 | 2 + 1/2 + 1/2, so 5 against 3, and the slot with 5 is numbered first.
    const owners = kfacOwners(groups, 2, 1536);
    const of = (name: string) => owners.get(name)!;
    for (const name of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]) expect(of(name)).toBe(0);
    for (const name of ["self_attn.out_proj", "fc1", "fc2"]) expect(of(name)).toBe(1);
  });

  test("two workers, more tokens than half of 3072: fc1, its row-held G dense, alone on one", () => {
    // 2,032 tokens (OPT-125M's bench: 16 x 127): fc1's G turns dense, 8: fc1 8.5 | {q, k, v} 5 |
    // out 2 and fc2 0.51 to the second: 8.5 against 7.51, and the slot with 8.5 is numbered first.
    const owners = kfacOwners(groups, 2, 2032);
    const of = (name: string) => owners.get(name)!;
    expect(of("fc1")).toBe(0);
    for (const name of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc2"]) expect(of(name)).toBe(1);
  });

  test("more workers than groups: the costliest groups first, one each", () => {
    const owners = kfacOwners(groups, 8, 2032);
    expect(new Set(owners.values()).size).toBe(4); // {q, k, v}, out, fc1, fc2
  });
});
