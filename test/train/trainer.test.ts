import { describe, expect, it } from "vitest";
import { AdamW } from "../../src/train/adamw.ts";
import { WindowSampler } from "../../src/train/batches.ts";
import type { GradientEngine } from "../../src/train/data_parallel.ts";
import { learningRate } from "../../src/train/schedule.ts";
import { type StepRecord, train, type TrainState } from "../../src/train/trainer.ts";

/** An engine whose "loss" is ½‖θ − c‖² (gradient θ − c), whatever the batch. */
const target = new Float32Array([1, -2, 3]);
const quadratic = (failAt = Infinity): GradientEngine => {
  let calls = 0;
  return {
    workers: 0,
    gradients(params, _batch, grads) {
      calls += 1;
      let loss = 0;
      params.forEach((p, i) => {
        grads[i] = p - target[i];
        loss += 0.5 * grads[i] ** 2;
      });
      return Promise.resolve(calls >= failAt ? NaN : loss);
    },
    loss: (params) => Promise.resolve(params.reduce((s, p, i) => s + 0.5 * (p - target[i]) ** 2, 0)),
    close: () => Promise.resolve(),
  };
};
const freshState = (): TrainState => ({
  step: 0,
  tokens: 0,
  seconds: 0,
  params: new Float32Array(3),
  optimizer: new AdamW([{ name: "x", size: 3, decay: false }]),
  sampler: new WindowSampler(new Uint16Array(64), 2, 8, 0),
});
const schedule = { peak: 0.1, floor: 0.01, warmup: 5, total: 200 };
const base = { schedule, clipNorm: 1, evalEvery: 50, saveEvery: 0 };

describe("train", () => {
  it("follows the schedule, counts tokens and converges on a quadratic", async () => {
    const state = freshState();
    const records: StepRecord[] = [];
    const validation = { ids: new Int32Array(16), batch: 2, ctx: 8 };
    const last = await train(state, {
      ...base,
      engine: quadratic(),
      until: 200,
      validation,
      onStep: (r) => void records.push(r),
    });
    expect(records.map((r) => r.lr)).toEqual(Array.from({ length: 200 }, (_, s) => learningRate(s, schedule)));
    expect(records.filter((r) => r.val_loss !== undefined).map((r) => r.step)).toEqual([50, 100, 150, 200]);
    expect(last!.tokens).toBe(200 * 16);
    expect(state.step).toBe(200);
    expect(state.optimizer.updates).toBe(200);
    expect(Math.max(...Array.from(state.params, (p, i) => Math.abs(p - target[i])))).toBeLessThan(0.02);
    expect(last!.val_loss).toBeLessThan(1e-3);
    expect(records[0].grad_norm).toBeCloseTo(Math.hypot(1, 2, 3), 5); // norm before clipping
  });

  it("checkpoints every saveEvery steps and at the stop step, which may precede the schedule's end", async () => {
    const state = freshState();
    const saved: number[] = [];
    await train(state, {
      ...base,
      saveEvery: 3,
      engine: quadratic(),
      until: 8,
      onCheckpoint: (s) => void saved.push(s.step),
    });
    expect(saved).toEqual([3, 6, 8]);
    expect(state.step).toBe(8);
  });

  it("stops after the current step and checkpoints when asked to", async () => {
    const state = freshState();
    const saved: number[] = [];
    await train(state, {
      ...base,
      engine: quadratic(),
      until: 100,
      shouldStop: () => state.step >= 4,
      onCheckpoint: (s) => void saved.push(s.step),
    });
    expect(saved).toEqual([4]);
  });

  it("fails on a non-finite loss naming the step, and on a stop step past the schedule", async () => {
    await expect(train(freshState(), { ...base, engine: quadratic(3), until: 10 })).rejects.toThrow(
      "Training loss became NaN at step 3",
    );
    await expect(train(freshState(), { ...base, engine: quadratic(), until: 201 })).rejects.toThrow(
      "Stop step 201 must be an integer no larger than the 200 total steps",
    );
  });
});
