/**
 * The flat parameter vector of a model: every weight of the outer part and of
 * each block, laid end to end in a fixed order, with the map back to
 * `WeightMap`s in kernel layout (src/model/types.ts).
 *
 * Training keeps parameters, gradients and optimizer moments as single
 * `Float32Array`s in this order: the optimizer is one loop, the data-parallel
 * workers exchange one buffer each, and checkpoints are a list of slices.
 * Order: the outer weights in `outerShapes` order, then blocks 0…L−1, each in
 * `blockShapes` order.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { type AdamWParam, decaysByDefault } from "./adamw.ts";

/** Where one weight sits in the flat vector. */
export interface ParamSlot {
  /** The full Hugging Face name (block prefix included). */
  key: string;
  /** `"outer"` or the block index. */
  part: "outer" | number;
  /** The name inside its `WeightMap` (outer: the HF name; block: without the prefix). */
  name: string;
  /** Kernel-layout shape. */
  shape: number[];
  offset: number;
  size: number;
}

/** The slots of a model and the total parameter count. */
export interface ParamLayout {
  slots: ParamSlot[];
  size: number;
}

/** The flat layout of `cfg`'s weights under `arch` (order in the module doc). */
export function paramLayout(arch: Architecture, cfg: ModelConfig): ParamLayout {
  const slots: ParamSlot[] = [];
  let offset = 0;
  const add = (part: "outer" | number, name: string, key: string, shape: number[]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    slots.push({ key, part, name, shape: [...shape], offset, size });
    offset += size;
  };
  for (const [name, shape] of arch.outerShapes(cfg)) add("outer", name, name, shape);
  const blockShapes = arch.blockShapes(cfg);
  for (let i = 0; i < cfg.layers; i++) {
    for (const [name, shape] of blockShapes) add(i, name, arch.blockPrefix(i) + name, shape);
  }
  return { slots, size: offset };
}

/** The optimizer's view of the layout: one entry per slot, decay as {@link decaysByDefault}. */
export function optimizerParams(layout: ParamLayout): AdamWParam[] {
  return layout.slots.map((s) => ({ name: s.key, size: s.size, decay: decaysByDefault(s.key, s.shape) }));
}

/** One tensor per slot holding a copy of its slice of `flat`, in slot order. */
export function slotTensors(layout: ParamLayout, flat: Float32Array): Tensor[] {
  if (flat.length !== layout.size) {
    throw new Error(`Parameter vector holds ${flat.length} values, the model has ${layout.size}`);
  }
  return layout.slots.map((s) => tf.tensor(flat.slice(s.offset, s.offset + s.size), s.shape, "float32"));
}

/** Groups per-slot tensors (slot order) into the outer and per-block `WeightMap`s. */
export function groupWeights(
  layout: ParamLayout,
  tensors: readonly Tensor[],
): { outer: WeightMap; blocks: WeightMap[] } {
  const outer: WeightMap = new Map();
  const blocks: WeightMap[] = [];
  layout.slots.forEach((s, k) => {
    if (s.part === "outer") outer.set(s.name, tensors[k]);
    else (blocks[s.part] ??= new Map()).set(s.name, tensors[k]);
  });
  return { outer, blocks };
}

/** `WeightMap`s holding copies of `flat` (the caller disposes them). */
export function weightsFromFlat(layout: ParamLayout, flat: Float32Array): { outer: WeightMap; blocks: WeightMap[] } {
  return groupWeights(layout, slotTensors(layout, flat));
}

/**
 * The flat vector of `WeightMap`s in this layout.
 *
 * @throws Error naming the weight that is missing or has the wrong shape
 */
export function flattenWeights(layout: ParamLayout, outer: WeightMap, blocks: readonly WeightMap[]): Float32Array {
  const flat = new Float32Array(layout.size);
  for (const s of layout.slots) {
    const t = s.part === "outer" ? outer.get(s.name) : blocks[s.part]?.get(s.name);
    if (!t) throw new Error(`Weight "${s.key}" is missing`);
    if (t.shape.join(",") !== s.shape.join(",")) {
      throw new Error(`Weight "${s.key}" has shape [${t.shape.join(", ")}], expected [${s.shape.join(", ")}]`);
    }
    flat.set(t.dataSync() as Float32Array, s.offset);
  }
  return flat;
}
