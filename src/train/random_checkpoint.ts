/**
 * Randomly initialised checkpoints of any OPT or LLaMA shape, written to disk
 * one tensor at a time (never the whole model in memory), for benchmarks of
 * shapes we cannot ship (OPT-125M, OPT-1.3B, LLaMA-7B: docs/GRADOT.md
 * "Benchmarks", "7B shape"). Weights are uniform with the standard deviation
 * of HF's init (0.02), norms 1, biases 0: the numbers do not matter to a
 * timing or memory benchmark, their shapes and dtypes do.
 *
 * @module
 */
import { writeFileAtomic } from "../io/atomic.ts";
import { saveCheckpoint, type StoredDtype, type TensorToSave } from "../io/checkpoint.ts";
import { llama } from "../model/llama.ts";
import { opt } from "../model/opt.ts";
import type { Architecture } from "../model/types.ts";
import { OPT_INIT_STD, optConfigJson, type OptHyperParameters } from "./opt_config.ts";
import { Prng } from "./prng.ts";

/** Well-known OPT shapes (Zhang et al. 2022; HF facebook/opt-* configs). */
export const OPT_SHAPES = {
  "opt-125m": { layers: 12, hidden: 768, heads: 12, ffn: 3072, maxPositions: 2048, vocabSize: 50272 },
  "opt-1.3b": { layers: 24, hidden: 2048, heads: 32, ffn: 8192, maxPositions: 2048, vocabSize: 50272 },
} as const;

/**
 * A model's sizes without its special tokens: OPT's {@link OptHyperParameters}
 * less the ids, which LLaMA shares (`ffn` is its `intermediate_size`; as many
 * key/value heads as heads).
 */
export type ModelShape = Omit<OptHyperParameters, "bosId" | "eosId" | "padId">;

/** LLaMA-7B (Touvron et al. 2023; HF huggyllama/llama-7b config.json). */
export const LLAMA_7B: ModelShape = { layers: 32, hidden: 4096, heads: 32, ffn: 11008, maxPositions: 2048, vocabSize: 32000 };

/** The HF `config.json` of a LLaMA of shape `p` (untied head, no biases, SiLU, unscaled RoPE); `dtype` is `torch_dtype`. */
export function llamaConfigJson(p: ModelShape, dtype: "float32" | "float16" = "float16"): Record<string, unknown> {
  for (const key of ["layers", "hidden", "heads", "ffn", "maxPositions", "vocabSize"] as const) {
    if (!Number.isInteger(p[key]) || p[key] <= 0) throw new Error(`LLaMA ${key} must be a positive integer, got ${p[key]}`);
  }
  if (p.hidden % p.heads !== 0) throw new Error(`LLaMA hidden size ${p.hidden} is not divisible by ${p.heads} heads`);
  return {
    architectures: ["LlamaForCausalLM"],
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: "silu",
    hidden_size: p.hidden,
    initializer_range: OPT_INIT_STD,
    intermediate_size: p.ffn,
    max_position_embeddings: p.maxPositions,
    model_type: "llama",
    num_attention_heads: p.heads,
    num_hidden_layers: p.layers,
    num_key_value_heads: p.heads,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    torch_dtype: dtype,
    vocab_size: p.vocabSize,
  };
}

/** Every tensor of `arch` for `config`, uniform random (norm weights 1, biases 0), in HF layout. */
function* randomTensors(arch: Architecture, config: Record<string, unknown>, seed: number): Generator<TensorToSave> {
  const cfg = arch.parseConfig(config);
  const prng = new Prng(seed);
  const bound = Math.sqrt(3) * OPT_INIT_STD; // uniform(-b, b) has std b/√3
  const make = (name: string, shape: number[], transposed: boolean): TensorToSave => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/norm\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith(".bias")) for (let i = 0; i < data.length; i++) data[i] = bound * (2 * prng.uniform() - 1);
    // HF stores nn.Linear weights [out, in]; shapes here are kernel layout [in, out].
    return { name, shape: transposed ? [...shape].reverse() : shape, data };
  };
  for (const [name, shape] of arch.outerShapes(cfg)) yield make(name, shape, arch.storedTransposed(name));
  for (let i = 0; i < cfg.layers; i++) {
    for (const [local, shape] of arch.blockShapes(cfg)) {
      yield make(arch.blockPrefix(i) + local, shape, arch.storedTransposed(local));
    }
  }
}

/** Options of {@link writeRandomOpt} and {@link writeRandomLlama}. */
export interface RandomCheckpointOptions {
  /** PRNG seed (default 0). */
  seed?: number;
  /** Stored dtype (default F16). */
  dtype?: StoredDtype;
  /** Shard size limit in data bytes (default 256 MiB); HF's index.json is written once there are several. */
  maxShardBytes?: number;
  /** Called after each tensor is generated, with the count so far and the total (progress of a multi-GB write). */
  onTensor?: (done: number, total: number) => void;
}

async function writeRandom(dir: string, arch: Architecture, config: Record<string, unknown>, options: RandomCheckpointOptions): Promise<void> {
  const cfg = arch.parseConfig(config);
  const total = arch.outerShapes(cfg).size + cfg.layers * arch.blockShapes(cfg).size;
  const counted = function* (tensors: Generator<TensorToSave>): Generator<TensorToSave> {
    let done = 0;
    for (const t of tensors) {
      yield t;
      options.onTensor?.(++done, total);
    }
  };
  await saveCheckpoint(dir, config, counted(randomTensors(arch, config, options.seed ?? 0)), {
    dtype: options.dtype ?? "F16",
    maxShardBytes: options.maxShardBytes ?? 256 * 1024 * 1024,
  });
}

/**
 * Writes a random OPT checkpoint of shape `p` to `dir` (config.json +
 * sharded safetensors of at most `maxShardBytes`), atomically.
 */
export async function writeRandomOpt(dir: string, p: OptHyperParameters, options: RandomCheckpointOptions = {}): Promise<void> {
  await writeRandom(dir, opt, optConfigJson(p, (options.dtype ?? "F16") === "F32" ? "float32" : "float16"), options);
}

/**
 * Writes a random LLaMA checkpoint of shape `p` to `dir` (config.json +
 * `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json` once
 * it exceeds `maxShardBytes`), atomically: the 7B-shape bench's input.
 */
export async function writeRandomLlama(dir: string, p: ModelShape, options: RandomCheckpointOptions = {}): Promise<void> {
  await writeRandom(dir, llama, llamaConfigJson(p, (options.dtype ?? "F16") === "F32" ? "float32" : "float16"), options);
}

/**
 * Writes `tokens` uniformly random ids below `vocab` as a Uint16 token
 * stream (the `.bin` calibration format `build-emulator` reads), seed 1:
 * the benchmarks' calibration text, whose words do not matter to a timing.
 */
export async function writeRandomTokens(path: string, vocab: number, tokens: number): Promise<void> {
  if (!Number.isInteger(vocab) || vocab < 1 || vocab > 65536) throw new Error(`Random tokens need a vocabulary of 1 to 65536 ids (Uint16), got ${vocab}`);
  const prng = new Prng(1);
  const ids = new Uint16Array(tokens).map(() => prng.below(vocab));
  await writeFileAtomic(path, new Uint8Array(ids.buffer));
}
