// ScaleOT (docs/METHOD.md §3 "ScaleOT"): its numerics on constructed cases
// (rank truncation, importance, harmonizer training, the REINFORCE policy,
// the matched-size rule), then the emulator of a random 6-block OPT whose
// block 3 is the identity (its attention and MLP outputs zeroed): block 3
// must rank least important and be the one replaced by a harmonizer, the
// other middle blocks keep rank-reduced attention, and the package must run.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fitHarmonizer, type HiddenStates } from "../../src/compress/harmonizer_fit.ts";
import { replacedForFraction, replacedForRatio, scaleotBlockSizes, scaleotMiddleParams } from "../../src/compress/scaleot_size.ts";
import { compressAttentionRanks, reducedRank, truncateRank } from "../../src/compress/selective_rank.ts";
import type { StageEvent } from "../../src/events/stage_events.ts";
import { scoreLoglikelihoods } from "../../src/eval/loglikelihood.ts";
import { verifyPackage } from "../../src/io/manifest.ts";
import { matmul } from "../../src/linalg/gemm.ts";
import { harmonizerForward, harmonizerParams, harmonizerShapes, initHarmonizer, withHarmonizers } from "../../src/model/harmonizer.ts";
import { checkPackageShapes } from "../../src/model/package_checks.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openPackage, readPackageWeights } from "../../src/model/open_package.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { buildScaleotEmulator } from "../../src/operators/scaleot.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { plackettLuceGradient, reinforceImportance } from "../../src/score/importance_policy.ts";
import { cosineImportance, leastImportant, spearman } from "../../src/score/layer_importance.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { Prng } from "../../src/train/prng.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";
import { referenceLogprob, tokensOf } from "../eval/reference.ts";
import { calibrationFor } from "./calibration_fixture.ts";
import { withIdentityBlocks } from "./identity_blocks.ts";

const SPLIT = { bottom: 1, top: 1 }; // middle: blocks 1..4
const IDENTITY = 3;
const HIDDEN = 32;

let root: string;
let base: ModelHandle;
let model: ModelHandle; // the random model with its identity block, in memory
const calibration = calibrationFor(64, 8, 16);

beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-scaleot-"));
  const dir = join(root, "random-6");
  await writeRandomOpt(dir, { layers: 6, hidden: HIDDEN, heads: 4, ffn: 64, maxPositions: 32, vocabSize: 64, bosId: 2, eosId: 2, padId: 1 }, {
    seed: 5,
    dtype: "F32",
  });
  base = await openModel(dir, { split: SPLIT });
  model = await withIdentityBlocks(base, [IDENTITY], dir);
});
afterAll(async () => {
  await model.close();
  await base.close();
  await rm(root, { recursive: true, force: true });
});

/** A random `[rows, cols]` matrix. */
function randomMatrix(rows: number, cols: number, seed: number) {
  const prng = new Prng(seed);
  return { rows, cols, data: Float32Array.from({ length: rows * cols }, () => prng.normal()) };
}

/** `[N, T, d]` hidden states held in memory, as the activation store serves them. */
function inMemory(data: Float32Array, sequences: number, length: number, width: number): HiddenStates {
  return { sequences, length, width, read: (from, to) => data.slice(from * length * width, to * length * width) };
}

describe("Selective Rank Compression", () => {
  test("the kept rank is round((1 − β) k), at least 1; β outside [0, 1) is refused", () => {
    expect([reducedRank(64, 0.75), reducedRank(64, 0), reducedRank(10, 0.99), reducedRank(10, 0.45)]).toEqual([16, 64, 1, 6]);
    expect(() => reducedRank(64, 1)).toThrow(
      "ScaleOT rank reduction must be in [0, 1) (the fraction of each attention projection's rank removed), got 1",
    );
  });

  test("the truncation error is the discarded singular values' energy, and the factors have rank r", () => {
    const w = randomMatrix(24, 20, 1); // [in, out]
    for (const rank of [3, 12]) {
      const { result, discardedEnergy } = truncateRank(w, rank);
      const approx = result.kind === "lowRank" ? matmul(result.weightU, result.weightV) : result.weight;
      if (result.kind === "lowRank") expect([result.weightU.cols, result.weightV.rows]).toEqual([rank, rank]);
      let err = 0;
      for (let i = 0; i < w.data.length; i++) err += (w.data[i] - approx.data[i]) ** 2;
      expect(discardedEnergy).toBeGreaterThan(0);
      expect(Math.abs(err - discardedEnergy) / discardedEnergy, `rank ${rank}`).toBeLessThan(1e-4);
    }
    // rank 12 of a 24×20 matrix: 12·44 ≥ 480, so the product is stored dense (as DRD does)
    expect(truncateRank(w, 12).result.kind).toBe("dense");
    expect(truncateRank(w, 3).result.kind).toBe("lowRank");
  });

  test("a block's attention projections are stored as rank-r factors, its MLP untouched", async () => {
    const weights = await model.loadBlock(1);
    try {
      const ranks = compressAttentionRanks(weights, model.arch.linears(model.cfg), 0.75);
      expect(ranks).toEqual({ "self_attn.q_proj": 8, "self_attn.k_proj": 8, "self_attn.v_proj": 8, "self_attn.out_proj": 8 });
      for (const name of Object.keys(ranks)) {
        expect(weights.has(`${name}.weight`)).toBe(false);
        expect([weights.get(`${name}.weight_u`)!.shape, weights.get(`${name}.weight_v`)!.shape]).toEqual([[HIDDEN, 8], [8, HIDDEN]]);
      }
      expect(weights.get("fc1.weight")!.shape).toEqual([HIDDEN, 64]);
    } finally {
      tf.dispose([...weights.values()]);
    }
  });
});

describe("layer importance", () => {
  test("a block that returns its input has cheap importance 0; one that changes it, more", () => {
    const x = randomMatrix(4 * 5, 6, 2).data; // [4, 5, 6]
    const y = x.map((v, i) => v + (i % 3 === 0 ? 0.5 : -0.2));
    expect(cosineImportance(inMemory(x, 4, 5, 6), inMemory(x, 4, 5, 6), 3)).toBeCloseTo(0, 6);
    expect(cosineImportance(inMemory(x, 4, 5, 6), inMemory(y, 4, 5, 6), 3)).toBeGreaterThan(0.01);
    expect(leastImportant([0.3, 0.01, 0.2, 0.01], 2)).toEqual([1, 3]);
  });

  test("Spearman's correlation is 1 for the same order, −1 for the reverse, ties averaged", () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    expect(spearman([1, 2, 2, 3], [1, 3, 2, 4])).toBeCloseTo(0.9487, 4); // scipy.stats.spearmanr
    expect(spearman([1, 1, 1], [1, 2, 3])).toBeNaN();
  });

  test("the Plackett–Luce gradient matches a finite difference of log π", () => {
    const logits = [0.3, -0.2, 0.8, 0.1];
    const drawn = [2, 0];
    const logProb = (t: number[]) => {
      let left = [0, 1, 2, 3];
      let sum = 0;
      for (const s of drawn) {
        sum += t[s] - Math.log(left.reduce((a, j) => a + Math.exp(t[j]), 0));
        left = left.filter((j) => j !== s);
      }
      return sum;
    };
    const grad = plackettLuceGradient(logits, drawn);
    for (let j = 0; j < 4; j++) {
      const up = [...logits];
      const down = [...logits];
      up[j] += 1e-5;
      down[j] -= 1e-5;
      expect(grad[j]).toBeCloseTo((logProb(up) - logProb(down)) / 2e-5, 6);
    }
  });

  test("REINFORCE: deterministic for a seed, its reward improves and it learns the cheapest blocks to replace", async () => {
    const cost = [0.9, 0.05, 0.7, 0.6, 0.02, 0.8]; // replacing blocks 1 and 4 costs least
    const reward = (replaced: number[]) => -replaced.reduce((a, j) => a + cost[j], 0);
    const a = await reinforceImportance(6, 2, reward, { episodes: 60, seed: 7 });
    const b = await reinforceImportance(6, 2, reward, { episodes: 60, seed: 7 });
    expect([...a.importance]).toEqual([...b.importance]);
    expect(a.rewards).toEqual(b.rewards);
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    expect(mean(a.rewards.slice(-15))).toBeGreaterThan(mean(a.rewards.slice(0, 15)) + 0.3);
    expect(leastImportant(a.importance, 2)).toEqual([1, 4]);
    const other = await reinforceImportance(6, 2, reward, { episodes: 60, seed: 8 });
    expect(other.rewards).not.toEqual(a.rewards);
    await expect(reinforceImportance(6, 2, reward, { episodes: 0 })).rejects.toThrow("--episodes must be a positive integer, got 0");
  });
});

describe("harmonizers", () => {
  test("a fresh harmonizer is the identity", () => {
    const values = initHarmonizer(HIDDEN, 4, new Prng(1));
    const weights: WeightMap = new Map([...harmonizerShapes(HIDDEN, 4)].map(([name, shape]) => [name, tf.tensor(values.get(name)!, shape)]));
    const x = tf.randomNormal([2, 3, HIDDEN], 0, 1, "float32", 4);
    const y = harmonizerForward(weights, x, 1e-5);
    expect(Math.max(...(tf.abs(tf.sub(y, x)).dataSync() as Float32Array))).toBe(0);
    tf.dispose([x, y, ...weights.values()]);
    expect(harmonizerParams(HIDDEN, 4)).toBe([...harmonizerShapes(HIDDEN, 4).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0));
  });

  test("training lowers its MSE to a block's output well below the identity's", () => {
    const [n, t, d] = [6, 8, 16];
    const x = randomMatrix(n * t, d, 3); // [n·T, d]
    const lift = randomMatrix(d, d, 4); // a smooth residual map to learn
    const change = matmul(x, lift);
    const y = x.data.map((v, i) => v + 0.3 * Math.tanh(change.data[i] / 4));
    const fitted = fitHarmonizer(inMemory(x.data, n, t, d), inMemory(y, n, t, d), { rank: 8, steps: 150, chunk: 2 });
    const [first, last] = [fitted.losses[0], fitted.losses.at(-1)!];
    console.log(`harmonizer MSE ${first.toExponential(3)} → ${last.toExponential(3)}`);
    expect(last).toBeLessThan(0.5 * first);
    expect(() => fitHarmonizer(inMemory(x.data, n, t, d), inMemory(y, n, t - 1, d))).toThrow("differ in shape");
  });
});

describe("the matched-size rule", () => {
  test("replaces the count whose middle size is nearest the ratio", () => {
    const sizes = { block: 120, kept: 100, harmonizer: 2 };
    // P(K) = (8 − K)·100 + 2K; 0.5 · 8 · 120 = 480 → K = 3 gives 506, K = 4 gives 408
    expect(replacedForRatio(8, 0.5, sizes)).toBe(3);
    expect(scaleotMiddleParams(8, 3, sizes)).toBe(506);
    expect(replacedForRatio(8, 1, sizes)).toBe(0);
    expect(replacedForRatio(8, 0.01, sizes)).toBe(7); // at least one block stays
    expect(replacedForFraction(8, 0.5)).toBe(4);
    expect(replacedForFraction(2, 0.9)).toBe(1);
    expect(() => replacedForFraction(8, 1)).toThrow("ScaleOT replace fraction must be in [0, 1)");
    expect(() => replacedForRatio(8, 0, sizes)).toThrow("ScaleOT ratio must be in (0, 1]");
  });

  test("a block's sizes follow the architecture: rank d/4 factors of the square attention projections", () => {
    const sizes = scaleotBlockSizes(model.arch, model.cfg, 0.75, 100);
    const d = HIDDEN;
    expect(sizes.block - sizes.kept).toBe(4 * (d * d - 8 * 2 * d));
  });
});

describe("the ScaleOT emulator of a model with an identity block", () => {
  const out = () => join(root, "scaleot");
  const events: StageEvent[] = [];

  test("replaces the identity block by a harmonizer, rank-reduces the others, and records what it did", async () => {
    const tensors = tf.memory().numTensors;
    const shards = await lastValueFrom(
      buildScaleotEmulator(model, {
        ratio: 0.5,
        replaceFraction: 0.25,
        calibration,
        out: out(),
        harmonizerSteps: 40,
        events: { next: (e) => events.push(e) },
      }).pipe(toArray()),
    );
    expect(tf.memory().numTensors).toBe(tensors);
    expect(shards.map((s) => s.block)).toEqual([0, 1, 2, 3, 4, 5, "outer"]);
    const manifest = await verifyPackage(out());
    expect(manifest.method).toBe("scaleot");
    expect(manifest.blockIndices).toBeUndefined();
    expect(manifest.settings).toMatchObject({ ratio: null, replaceFraction: 0.25, rankReduction: 0.75, replaced: [IDENTITY], importance: "cheap" });
    const importance = manifest.extra!.importance as { cheap: number[]; blocks: number[]; rl: null; spearman: null };
    expect(importance.blocks).toEqual([1, 2, 3, 4]);
    expect(importance.cheap[IDENTITY - 1]).toBeCloseTo(0, 5);
    expect(Math.min(...importance.cheap.filter((_, p) => p !== IDENTITY - 1))).toBeGreaterThan(1e-3);
    expect(importance.rl).toBeNull();
    const [first, last] = (manifest.extra!.harmonizerLoss as Record<string, number[]>)[String(IDENTITY)];
    expect(last).toBeLessThanOrEqual(first); // the identity block's target is its input: the fresh harmonizer is exact

    const shard = (i: number) => manifest.shards.find((s) => s.block === i)!;
    expect(shard(IDENTITY).tensors.map((t) => t.name).sort()).toEqual([...harmonizerShapes(HIDDEN, 8).keys()].sort());
    for (const i of [1, 2, 4]) {
      const u = shard(i).tensors.find((t) => t.name === "self_attn.q_proj.weight_u")!;
      expect(u.shape).toEqual([HIDDEN, 8]);
    }
    expect(shard(0).tensors.some((t) => t.name === "self_attn.q_proj.weight")).toBe(true); // adapters untouched

    // The harmonizer's parameters count in the emulator's size.
    const listed = manifest.extra!.blocks as Array<{ index: number; role: string; params: number }>;
    const middle = listed.filter((b) => b.role === "middle");
    const sizes = scaleotBlockSizes(model.arch, model.cfg, 0.75, harmonizerParams(HIDDEN, 8));
    expect(middle.find((b) => b.index === IDENTITY)!.params).toBe(harmonizerParams(HIDDEN, 8));
    expect(middle.reduce((n, b) => n + b.params, 0)).toBe(scaleotMiddleParams(4, 1, sizes));
    expect(manifest.extra!.plannedMiddleParams).toBe(scaleotMiddleParams(4, 1, sizes));

    // Progress: done runs 1..total (6 forwarded, 4 scored, 1 harmonizer, 7 shards).
    const marks = events.filter((e) => e.done !== undefined);
    expect(marks.map((e) => e.done)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
    expect(new Set(marks.map((e) => e.total))).toEqual(new Set([18]));
  });

  test("opened, it runs the harmonizer and the factored blocks: log-likelihoods equal a hand-assembled model's", async () => {
    const emulator = await openPackage(out());
    const manifest = emulator.manifest;
    const blocks: WeightMap[] = [];
    try {
      for (const i of model.blockIndices) blocks.push((await readPackageWeights(out(), manifest, i))!);
      const requests = [12, 20].map((n, k) => ({ tokens: tokensOf(n, 70 + k, 3, 64), start: 1 + k }));
      const assembled = { ...model, arch: withHarmonizers(model.arch) };
      const expected = requests.map((r) => referenceLogprob(assembled, blocks, r.tokens, r.start));
      const got = await scoreLoglikelihoods(emulator, requests, { residency: "resident" });
      expect(Math.max(...got.map((g, k) => Math.abs(g.logprob - expected[k])))).toBeLessThan(1e-4);
    } finally {
      tf.dispose(blocks.flatMap((b) => [...b.values()]));
      await emulator.close();
    }
  });

  test("a harmonizer shard of the wrong kind or shapes is refused, naming the shard and the tensor", async () => {
    const manifest = await verifyPackage(out());
    const path = join(out(), "block-0003.arrow");
    const edit = (f: (tensors: Array<{ name: string; shape: number[]; dtype: string }>) => void, role = "middle") => ({
      ...manifest,
      shards: manifest.shards.map((s) => {
        if (s.block !== IDENTITY) return s;
        const tensors = s.tensors.map((t) => ({ ...t, shape: [...t.shape] }));
        f(tensors);
        return { ...s, role, tensors } as typeof s;
      }),
    });
    const check = (m: typeof manifest) => () => checkPackageShapes(out(), m, model.arch, model.cfg, "the model");
    expect(check(manifest)).not.toThrow();
    expect(check(edit((ts) => ts.find((t) => t.name === "harmonizer.up.weight")!.shape.splice(1, 1, 31)))).toThrow(
      `Shard "${path}" tensor "harmonizer.up.weight" has shape [8, 31], but a harmonizer of rank 8 for the model has [8, 32]`,
    );
    expect(check(edit((ts) => ts.splice(ts.findIndex((t) => t.name === "harmonizer.norm.bias"), 1)))).toThrow(
      `Shard "${path}" holds a harmonizer without tensor "harmonizer.norm.bias"`,
    );
    expect(check(edit((ts) => ts.push({ name: "fc1.weight", shape: [32, 64], dtype: "float32" })))).toThrow(
      `Shard "${path}" holds a harmonizer and tensor "fc1.weight", which a harmonizer has no weight for`,
    );
    expect(check(edit(() => {}, "adapter"))).toThrow(`Shard "${path}" holds a harmonizer as block 3, which is adapter`);
  });

  test("RL importance: deterministic for a seed, recorded beside the cheap one with their rank correlation", async () => {
    const build = async (dir: string) => {
      await lastValueFrom(buildScaleotEmulator(model, {
        ratio: 0.5, replaceFraction: 0.25, importance: "rl", episodes: 12, calibration, out: dir, harmonizerSteps: 5,
      }).pipe(toArray()));
      return (await verifyPackage(dir));
    };
    const [a, b] = [await build(join(root, "rl-a")), await build(join(root, "rl-b"))];
    const ia = a.extra!.importance as { rl: number[]; rewards: number[]; spearman: number; cheap: number[] };
    expect(ia.rl).toEqual((b.extra!.importance as { rl: number[] }).rl);
    expect(ia.rewards.length).toBe(12);
    expect(ia.spearman).toBeCloseTo(spearman(ia.cheap, ia.rl), 12);
    expect(a.settings).toMatchObject({ importance: "rl", episodes: 12, rewardSequences: 8 }); // min(16, the 8 calibration sequences)
    expect(a.settings.replaced).toEqual(leastImportant(ia.rl, 1).map((p) => p + 1));
  });

  test("bad options are clear errors and nothing is written", async () => {
    const bad = join(root, "bad");
    const build = (o: object) => lastValueFrom(buildScaleotEmulator(model, { ratio: 0.5, calibration, out: bad, ...o }));
    await expect(build({ replaceFraction: 1 })).rejects.toThrow("ScaleOT replace fraction must be in [0, 1)");
    await expect(build({ rankReduction: -0.1 })).rejects.toThrow("ScaleOT rank reduction must be in [0, 1)");
    await expect(build({ importance: "random" })).rejects.toThrow(`--importance expects cheap or rl, got "random"`);
    await expect(build({ ratio: 2 })).rejects.toThrow("ScaleOT ratio must be in (0, 1]");
    expect(await stat(bad).then(() => true, () => false)).toBe(false);
  });
});
