/**
 * What a fine-tuning run trains, as a flat parameter vector (the layout
 * conventions of src/train/params.ts): the chosen blocks' weights in full
 * (docs/METHOD.md §4 default), or LoRA factors on their linears (the §4 option,
 * src/train/lora.ts), plus the outer weights (embeddings, positions, final
 * norm, untied head) when asked. Everything else is frozen and never copied.
 *
 * Slot keys are Hugging Face names (`model.decoder.layers.3.fc1.weight`,
 * LoRA factors `model.decoder.layers.3.fc1.lora_a`), slot names the names
 * inside a block's `WeightMap`, so AdamW's weight-decay rule
 * ({@link decaysByDefault}) and the adapter package's names both apply as
 * they are. Order: outer weights (`outerShapes` order), then the tuned blocks
 * in ascending index, each in `blockShapes` (full) or `linears` (LoRA) order.
 * Blocks are counted by position in {@link ResidentModel} `blocks`, which is
 * the original index unless the model drops blocks (an OT LayerDrop
 * emulator); src/train/tune.ts maps positions to original indices for the
 * adapter package.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { sameShape } from "../model/shapes.ts";
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { initLoraFactors, LORA_A, LORA_B, loraScale, loraShapes, loraWeight, type LoraOptions } from "./lora.ts";
import { groupWeights, type ParamLayout, type ParamSlot } from "./params.ts";
import { Prng } from "./prng.ts";

/** Which weights a run trains. */
export interface TuneScope {
  /** Positions in `ResidentModel.blocks` of the blocks whose weights train (the adapter blocks, or all for full fine-tuning). */
  blocks: number[];
  /** LoRA factors on those blocks' linears instead of their full weights. */
  lora?: LoraOptions;
  /** Also train every outer weight in full (embeddings, positions, final norm, untied head). */
  embeddings: boolean;
}

/** A model with every weight resident: the frozen base the trainable set overlays. */
export interface ResidentModel {
  arch: Architecture;
  cfg: ModelConfig;
  outer: WeightMap;
  blocks: WeightMap[];
}

/** The trainable parameters of a {@link TuneScope} over a {@link ResidentModel}. */
export interface TrainableSet {
  scope: TuneScope;
  layout: ParamLayout;
  /** Starting values: copies of the base weights, fresh LoRA factors drawn from `seed`. */
  initial(seed: number): Float32Array;
  /**
   * The model's effective weights with the trainable tensors (slot order) in
   * place: frozen maps are the base ones (shared, not copied); LoRA linears
   * become `W + s·A B`. Call inside the caller's `tf.tidy`/gradient scope.
   */
  assemble(tensors: readonly Tensor[]): { outer: WeightMap; blocks: WeightMap[] };
  /**
   * The tuned weights per part as an adapter package stores them (full
   * weights, or `lora_a` and `lora_b` with the scale folded into `lora_b`),
   * copied out of `params`.
   */
  adapterArrays(params: Float32Array): Map<number | "outer", Array<{ name: string; shape: number[]; data: Float32Array }>>;
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * The trainable set of `scope` over `model`.
 *
 * @throws Error naming the block and weight when a tuned block lacks a weight
 *   or holds it in another shape (e.g. a compressed emulator block)
 */
export function trainableSet(model: ResidentModel, scope: TuneScope): TrainableSet {
  const { arch, cfg } = model;
  const blocks = [...new Set(scope.blocks)].sort((a, b) => a - b);
  if (blocks.length === 0 && !scope.embeddings) throw new Error("Nothing to tune: no block and no embeddings chosen");
  for (const i of blocks) {
    if (!Number.isInteger(i) || i < 0 || i >= model.blocks.length) {
      throw new Error(`Cannot tune block ${i}: the model has blocks 0..${model.blocks.length - 1}`);
    }
  }
  const scale = scope.lora ? loraScale(scope.lora) : 1;
  const slots: ParamSlot[] = [];
  let offset = 0;
  const add = (part: "outer" | number, name: string, shape: number[]) => {
    const key = part === "outer" ? name : arch.blockPrefix(part) + name;
    slots.push({ key, part, name, shape: [...shape], offset, size: sizeOf(shape) });
    offset += sizeOf(shape);
  };
  const requireWeight = (part: "outer" | number, name: string, shape: number[]) => {
    const t = part === "outer" ? model.outer.get(name) : model.blocks[part].get(name);
    const where = part === "outer" ? "the outer weights" : `block ${part}`;
    if (!t) throw new Error(`Cannot tune ${where}: weight "${name}" is missing (a compressed block cannot be tuned)`);
    if (!sameShape(t.shape, shape)) {
      throw new Error(`Cannot tune ${where}: weight "${name}" is [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
    }
  };
  if (scope.embeddings) {
    for (const [name, shape] of arch.outerShapes(cfg)) {
      requireWeight("outer", name, shape);
      add("outer", name, shape);
    }
  }
  const linears = arch.linears(cfg);
  for (const i of blocks) {
    if (scope.lora) {
      for (const spec of linears) {
        const { a, b } = loraShapes(spec, scope.lora.rank);
        requireWeight(i, `${spec.name}.weight`, [spec.inFeatures, spec.outFeatures]);
        add(i, spec.name + LORA_A, a);
        add(i, spec.name + LORA_B, b);
      }
    } else {
      for (const [name, shape] of arch.blockShapes(cfg)) {
        requireWeight(i, name, shape);
        add(i, name, shape);
      }
    }
  }
  const layout: ParamLayout = { slots, size: offset };
  const specOf = new Map(linears.map((s) => [s.name, s]));

  return {
    scope: { ...scope, blocks },
    layout,
    initial(seed) {
      const flat = new Float32Array(layout.size);
      const prng = new Prng(seed);
      for (const s of slots) {
        if (s.name.endsWith(LORA_A)) {
          flat.set(initLoraFactors(specOf.get(s.name.slice(0, -LORA_A.length))!, scope.lora!.rank, prng).a, s.offset);
        } else if (!s.name.endsWith(LORA_B)) {
          const base = s.part === "outer" ? model.outer.get(s.name)! : model.blocks[s.part].get(s.name)!;
          flat.set(base.dataSync() as Float32Array, s.offset);
        } // LoRA B starts at zero
      }
      return flat;
    },
    assemble(tensors) {
      const trained = groupWeights(layout, tensors as Tensor[]);
      const outer = scope.embeddings ? trained.outer : model.outer;
      const effective = model.blocks.map((base, i) => {
        const own = trained.blocks[i];
        if (!own) return base;
        if (!scope.lora) return own;
        const merged: WeightMap = new Map(base);
        for (const spec of linears) {
          const name = `${spec.name}.weight`;
          merged.set(name, loraWeight(base.get(name)!, own.get(spec.name + LORA_A)!, own.get(spec.name + LORA_B)!, scale));
        }
        return merged;
      });
      return { outer, blocks: effective };
    },
    adapterArrays(params) {
      if (params.length !== layout.size) {
        throw new Error(`Parameter vector holds ${params.length} values, the trainable set has ${layout.size}`);
      }
      const parts = new Map<number | "outer", Array<{ name: string; shape: number[]; data: Float32Array }>>();
      for (const s of slots) {
        const data = params.slice(s.offset, s.offset + s.size);
        if (s.name.endsWith(LORA_B)) for (let k = 0; k < data.length; k++) data[k] *= scale;
        const list = parts.get(s.part) ?? [];
        list.push({ name: s.name, shape: [...s.shape], data });
        parts.set(s.part, list);
      }
      return parts;
    },
  };
}
