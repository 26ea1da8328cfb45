/**
 * Training throughput of a model shape on this machine: tokens per second of
 * full optimizer steps (data-parallel gradients, clipping, AdamW), to size a
 * pretraining run before launching it. Random initial weights and uniformly
 * random tokens: the cost of a step does not depend on their values.
 *
 * @module
 */
import { loadavg } from "node:os";
import { AdamW } from "./adamw.ts";
import { WindowSampler } from "./batches.ts";
import { clipGlobalNorm } from "./clip.ts";
import { type GradientEngine, inProcessEngine, startDataParallel } from "./data_parallel.ts";
import { trainModel } from "./gradients.ts";
import { initOptParams } from "./init.ts";
import { optimizerParams } from "./params.ts";
import { Prng } from "./prng.ts";

/** What {@link measureThroughput} measures. */
export interface ThroughputOptions {
  /** HF config.json object of the model. */
  config: Record<string, unknown>;
  batch: number;
  ctx: number;
  /** Worker threads (0: this thread). */
  workers: number;
  /** Rows per forward/backward pass. */
  microBatch: number;
  /** Timed steps, after one untimed warm-up step. */
  steps: number;
}

/** One measurement. */
export interface ThroughputResult {
  workers: number;
  microBatch: number;
  parameters: number;
  /** Tokens per second over the timed steps. */
  tokensPerSecond: number;
  /** Seconds per optimizer step, each timed step. */
  stepSeconds: number[];
  /** 1-minute load average before and after (other processes share the cores). */
  load: [number, number];
}

/** Times `steps` training steps of the model in `o.config` (module doc). */
export async function measureThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const load0 = loadavg()[0];
  const model = trainModel(o.config);
  const params = initOptParams(model.layout, model.cfg, 0);
  const prng = new Prng(1);
  const stream = Uint16Array.from({ length: o.batch * o.ctx * 4 }, () => prng.below(model.cfg.vocabSize));
  const sampler = new WindowSampler(stream, o.batch, o.ctx, 2);
  const optimizer = new AdamW(optimizerParams(model.layout));
  const grads = new Float32Array(model.layout.size);
  const engine: GradientEngine = o.workers === 0
    ? inProcessEngine(model, o.microBatch)
    : await startDataParallel(model, o.workers, o.microBatch);
  const stepSeconds: number[] = [];
  try {
    for (let s = 0; s <= o.steps; s++) {
      const start = performance.now();
      await engine.gradients(params, sampler.next(), grads);
      clipGlobalNorm(grads, 1);
      optimizer.step(params, grads, 1e-4);
      if (s > 0) stepSeconds.push((performance.now() - start) / 1000);
    }
  } finally {
    await engine.close();
  }
  const total = stepSeconds.reduce((a, b) => a + b, 0);
  return {
    workers: o.workers,
    microBatch: o.microBatch,
    parameters: model.layout.size,
    tokensPerSecond: (o.steps * o.batch * o.ctx) / total,
    stepSeconds,
    load: [load0, loadavg()[0]],
  };
}
