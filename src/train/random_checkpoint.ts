/**
 * A randomly initialised OPT checkpoint of any shape, written to disk one
 * tensor at a time (never the whole model in memory), for benchmarks of
 * shapes we cannot ship (OPT-125M, OPT-1.3B). Weights are uniform with the
 * standard deviation of HF OPT's init (0.02), norms 1, biases 0: the numbers
 * do not matter to a timing or memory benchmark, their shapes and dtypes do.
 *
 * @module
 */
import { saveCheckpoint, type StoredDtype, type TensorToSave } from "../io/checkpoint.ts";
import { opt } from "../model/opt.ts";
import { OPT_INIT_STD, optConfigJson, type OptHyperParameters } from "./opt_config.ts";
import { Prng } from "./prng.ts";

/** Well-known OPT shapes (Zhang et al. 2022; HF facebook/opt-* configs). */
export const OPT_SHAPES = {
  "opt-125m": { layers: 12, hidden: 768, heads: 12, ffn: 3072, maxPositions: 2048, vocabSize: 50272 },
  "opt-1.3b": { layers: 24, hidden: 2048, heads: 32, ffn: 8192, maxPositions: 2048, vocabSize: 50272 },
} as const;

function* randomTensors(p: OptHyperParameters, seed: number): Generator<TensorToSave> {
  const cfg = opt.parseConfig(optConfigJson(p));
  const prng = new Prng(seed);
  const bound = Math.sqrt(3) * OPT_INIT_STD; // uniform(-b, b) has std b/√3
  const make = (name: string, shape: number[], transposed: boolean): TensorToSave => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.includes("layer_norm") && name.endsWith(".weight")) data.fill(1);
    else if (!name.endsWith(".bias")) for (let i = 0; i < data.length; i++) data[i] = bound * (2 * prng.uniform() - 1);
    // HF stores nn.Linear weights [out, in]; shapes here are kernel layout [in, out].
    return { name, shape: transposed ? [...shape].reverse() : shape, data };
  };
  for (const [name, shape] of opt.outerShapes(cfg)) yield make(name, shape, false);
  for (let i = 0; i < cfg.layers; i++) {
    for (const [local, shape] of opt.blockShapes(cfg)) {
      yield make(opt.blockPrefix(i) + local, shape, opt.storedTransposed(local));
    }
  }
}

/**
 * Writes a random OPT checkpoint of shape `p` to `dir` (config.json +
 * sharded safetensors of at most `maxShardBytes`), atomically.
 */
export async function writeRandomOpt(
  dir: string,
  p: OptHyperParameters,
  options: { seed?: number; dtype?: StoredDtype; maxShardBytes?: number } = {},
): Promise<void> {
  const dtype = options.dtype ?? "F16";
  await saveCheckpoint(dir, optConfigJson(p, dtype === "F32" ? "float32" : "float16"), randomTensors(p, options.seed ?? 0), {
    dtype,
    maxShardBytes: options.maxShardBytes ?? 256 * 1024 * 1024,
  });
}
