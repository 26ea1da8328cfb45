/**
 * OPT block-stack benchmark (not a test, docs/DESIGN.md "Tensors"): forward +
 * backward tokens/s of a stack of OPT blocks on the wasm backend against the
 * same on tfjs `cpu`, and the GFLOP/s the stack's matmul kernels reach
 * against a plain untransposed `matMul` of the MLP's shape measured in the
 * same run (target: at least 70%).
 *
 * Matmul GFLOP/s come from tfjs' own kernel profile (`tf.profile`): the summed
 * time of every `BatchMatMul`/`_FusedMatMul` kernel of one forward+backward,
 * and their FLOPs from the kernels' shapes, so norms and softmax do not
 * count against the matmuls.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { BenchRow } from "./linalg.ts";
import { initBackend, tf } from "../tensor/backend.ts";
import { initOptWeights } from "../train/init.ts";
import { optConfigJson } from "../train/opt_config.ts";
import { opt } from "../model/opt.ts";
import type { WeightMap } from "../model/types.ts";

/** The stack to time; defaults are OPT-125M's block shape at 512 tokens. */
export interface BlockStackBenchOptions {
  /** Blocks in the stack. */
  layers?: number;
  /** Hidden width. */
  hidden?: number;
  /** Attention heads. */
  heads?: number;
  /** MLP width. */
  ffn?: number;
  /** Sequences per pass. */
  batch?: number;
  /** Tokens per sequence. */
  tokens?: number;
  /** Timed forward+backward passes per backend (default 3 on wasm, 1 on cpu). */
  repeats?: number;
  /** Skip the (slow) cpu backend. */
  skipCpu?: boolean;
  /** Called with each row as soon as it is measured. */
  onRow?: (row: BenchRow) => void;
}

const MATMUL_KERNELS = new Set(["BatchMatMul", "_FusedMatMul"]);
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** FLOPs of a batched matmul from its input and output shapes (no broadcasting). */
function matmulFlops(inputs: number[][], output: number[]): number {
  const batch = size(output.slice(0, -2));
  const k = Math.sqrt((size(inputs[0]) * size(inputs[1])) / (size(output) * batch));
  return 2 * size(output) * Math.round(k);
}

function stackGrad(blocks: WeightMap[], cfg: ReturnType<typeof opt.parseConfig>, x: Tensor): Tensor[] {
  const weights = blocks.flatMap((b) => [...b.values()]);
  return tf.grads((input: Tensor, ..._w: Tensor[]) => {
    let h = input;
    for (const b of blocks) h = opt.block(b, h, cfg); // [B, T, d]
    return tf.sum(h);
  })([x, ...weights]);
}

async function timeStack(o: Required<Omit<BlockStackBenchOptions, "onRow" | "skipCpu">>, repeats: number) {
  const raw = optConfigJson({
    layers: o.layers, hidden: o.hidden, heads: o.heads, ffn: o.ffn, maxPositions: o.tokens,
    vocabSize: 64, bosId: 2, eosId: 2, padId: 1,
  });
  const cfg = opt.parseConfig(raw);
  const { outer, blocks } = initOptWeights(opt, cfg, 0);
  const x = tf.randomNormal([o.batch, o.tokens, o.hidden]); // [B, T, d]
  try {
    tf.dispose(stackGrad(blocks, cfg, x)); // warm-up
    let best = Infinity;
    for (let i = 0; i < repeats; i++) {
      const start = performance.now();
      const grads = stackGrad(blocks, cfg, x);
      await grads[0].data();
      best = Math.min(best, (performance.now() - start) / 1000);
      tf.dispose(grads);
    }
    const profile = await tf.profile(() => tf.dispose(stackGrad(blocks, cfg, x)));
    let flops = 0;
    let ms = 0;
    for (const k of profile.kernels) {
      if (!MATMUL_KERNELS.has(k.name)) continue;
      flops += matmulFlops(k.inputShapes as number[][], k.outputShapes[0] as number[]);
      const time = await k.kernelTimeMs;
      if (typeof time !== "number") throw new Error(`The ${tf.getBackend()} backend cannot time kernels: ${time.error}`);
      ms += time;
    }
    return { seconds: best, matmulGflops: flops / 1e9 / (ms / 1000), matmulShare: ms / 1000 / best };
  } finally {
    tf.dispose([x, ...outer.values(), ...blocks.flatMap((b) => [...b.values()])]);
  }
}

function plainMatmulGflops(m: number, k: number, n: number): number {
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  tf.matMul(a, b).dispose();
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    const c = tf.matMul(a, b);
    c.dataSync();
    best = Math.min(best, (performance.now() - start) / 1000);
    c.dispose();
  }
  tf.dispose([a, b]);
  return (2 * m * k * n) / 1e9 / best;
}

/** Runs the block-stack benchmark on wasm (and cpu unless skipped); returns its rows. */
export async function benchBlockStack(options: BlockStackBenchOptions = {}): Promise<BenchRow[]> {
  const o = {
    layers: options.layers ?? 2,
    hidden: options.hidden ?? 768,
    heads: options.heads ?? 12,
    ffn: options.ffn ?? 3072,
    batch: options.batch ?? 4,
    tokens: options.tokens ?? 128,
    repeats: options.repeats ?? 3,
  };
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow) => {
    rows.push(row);
    options.onRow?.(row);
  };
  const tokens = o.batch * o.tokens;
  const shape = `${o.layers} OPT blocks d=${o.hidden} ffn=${o.ffn}, ${o.batch}x${o.tokens} tokens`;
  await initBackend(undefined, true);
  const active = tf.getBackend();
  await tf.setBackend("wasm");
  const wasm = await timeStack(o, o.repeats);
  const plain = plainMatmulGflops(tokens, o.hidden, o.ffn);
  emit({ name: `fwd+bwd wasm (${shape})`, value: tokens / wasm.seconds, unit: "tokens/s" });
  emit({ name: "plain matMul wasm", value: plain, unit: "GFLOP/s", note: `[${tokens},${o.hidden}]x[${o.hidden},${o.ffn}]` });
  emit({
    name: "block matmul kernels wasm",
    value: wasm.matmulGflops,
    unit: "GFLOP/s",
    note: `${((100 * wasm.matmulGflops) / plain).toFixed(0)}% of plain matMul (target >= 70%); matmuls are ${(100 * wasm.matmulShare).toFixed(0)}% of the step`,
  });
  if (!options.skipCpu) {
    await tf.setBackend("cpu");
    const cpu = await timeStack(o, Math.min(1, o.repeats));
    emit({
      name: `fwd+bwd cpu (${shape})`,
      value: tokens / cpu.seconds,
      unit: "tokens/s",
      note: `wasm is ${(cpu.seconds / wasm.seconds).toFixed(1)}x faster`,
    });
  }
  await tf.setBackend(active);
  return rows;
}
