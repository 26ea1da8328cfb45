/**
 * The bridge between a block's {@link WeightMap} and the SCP/DRD numerics'
 * {@link Matrix} view (`src/score/gcs.ts`): which linears form the MLP, and
 * reading and writing them.
 *
 * @module
 */
import type { ChannelMlp, MlpLinear } from "../score/gcs.ts";
import type { LinearSpec, WeightMap } from "./types.ts";
import { tf } from "../tensor/backend.ts";
import { fromMatrix, peekMatrix, replaceWeight } from "./weights.ts";

/** A block's MLP linears: the channel producers (fc1, or gate and up) and the consumer (fc2/down). */
export interface MlpSpecs {
  inputs: LinearSpec[];
  output: LinearSpec;
}

/** Whether a linear is an attention projection (compressed by DRD). */
export function isAttention(spec: LinearSpec): boolean {
  return spec.role.startsWith("attn.");
}

/**
 * The name a block's MLP goes by among its parts (the others are its
 * attention linears, by name): what a part of a block's GradOT scoring and
 * compression covers (`GcsOptions.parts`; src/distributed/block_parts.ts).
 */
export const MLP_PART = "mlp";

/** Whether a linear produces the MLP's channels (fc1, or gate and up): SCP removes its columns. */
export function producesChannels(spec: LinearSpec): boolean {
  return spec.role === "mlp.in" || spec.role === "mlp.gate" || spec.role === "mlp.up";
}

/**
 * Whether a linear is the channel producer (`mlp.in`) or the consumer
 * (`mlp.out`) of a ReLU MLP (`LinearSpec.reluChannels`): SCP's first-order
 * terms of both come from the block's channel products, not from their
 * gradients (docs/GRADOT.md "SCP's first-order terms").
 */
export function inReluMlp(spec: LinearSpec): boolean {
  return spec.reluChannels === true && (spec.role === "mlp.in" || spec.role === "mlp.out");
}

/** The MLP linears of a block's linear list; throws when there is no `mlp.out`. */
export function mlpSpecs(specs: LinearSpec[]): MlpSpecs {
  const inputs = specs.filter(producesChannels);
  const output = specs.find((s) => s.role === "mlp.out");
  if (!output || inputs.length === 0) {
    throw new Error(`The block has no channel MLP (linears: ${specs.map((s) => `${s.name}:${s.role}`).join(", ")})`);
  }
  return { inputs, output };
}

function weightOf(weights: WeightMap, name: string): ReturnType<WeightMap["get"]> & object {
  const w = weights.get(name);
  if (!w) throw new Error(`Block weights lack "${name}"`);
  return w;
}

/**
 * One linear as SCP sees it: its kernel-layout weight (a read-only view of
 * the tensor heap where the backend allows, `peekMatrix`: use it before the
 * next tensor op) and a copy of its bias.
 */
export function readLinear(weights: WeightMap, spec: LinearSpec): MlpLinear {
  const bias = weights.get(`${spec.name}.bias`);
  return {
    weight: peekMatrix(weightOf(weights, `${spec.name}.weight`)), // [in, out]
    ...(bias ? { bias: bias.dataSync() as Float32Array } : {}),
  };
}

/** The block's MLP as SCP sees it ({@link readLinear}: weight views valid until the next tensor op). */
export function readMlp(weights: WeightMap, specs: MlpSpecs): ChannelMlp {
  return { inputs: specs.inputs.map((s) => readLinear(weights, s)), output: readLinear(weights, specs.output) };
}

/** Writes a (pruned) MLP back into the block's weights, disposing what it replaces. */
export function writeMlp(weights: WeightMap, specs: MlpSpecs, mlp: ChannelMlp): void {
  const write = (spec: LinearSpec, linear: MlpLinear) => {
    replaceWeight(weights, `${spec.name}.weight`, fromMatrix(linear.weight));
    if (linear.bias) replaceWeight(weights, `${spec.name}.bias`, tf.tensor1d(linear.bias));
  };
  specs.inputs.forEach((s, i) => write(s, mlp.inputs[i]));
  write(specs.output, mlp.output);
}
