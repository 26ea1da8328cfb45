/**
 * A weight map copied once into a `SharedArrayBuffer`, so every calibration
 * worker reads the same bytes without a copy per message
 * (docs/DISTRIBUTED.md "All cores of one machine").
 *
 * @module
 */
import { architectureFor } from "../model/registry.ts";
import type { Architecture, ModelConfig, WeightMap } from "../model/types.ts";
import { initBackend, tf } from "../tensor/backend.ts";
import { peekValues } from "../tensor/heap_view.ts";

/** A weight map as one shared float32 buffer and each tensor's place in it. */
export interface SharedWeights {
  /** Distinguishes publications: a worker rebuilds its tensors when it changes. */
  id: number;
  buffer: SharedArrayBuffer;
  tensors: Array<{ name: string; shape: number[]; offset: number; length: number }>;
}

let published = 0;

/**
 * Copies `weights` (float32 tensors) into a shared buffer, in the map's
 * order, straight from the tensor heap: no `dataSync` copy in between, on
 * the building thread that every block of a pool build passes through. The
 * buffer is the one `reuse` gives for its size, if any (one whose readers
 * are done: {@link CalibrationPool.retire}), else new.
 */
export function shareWeights(weights: WeightMap, reuse?: (bytes: number) => SharedArrayBuffer | undefined): SharedWeights {
  let length = 0;
  const tensors = [...weights].map(([name, t]) => {
    const entry = { name, shape: [...t.shape], offset: length, length: t.size };
    length += t.size;
    return entry;
  });
  const bytes = length * Float32Array.BYTES_PER_ELEMENT;
  const buffer = reuse?.(bytes) ?? new SharedArrayBuffer(bytes);
  const all = new Float32Array(buffer);
  // Heap views, copied at once: no op runs between, so the heap cannot grow under them.
  for (const { name, offset } of tensors) all.set(peekValues(weights.get(name)!), offset);
  return { id: ++published, buffer, tensors };
}

/** One tensor's values in a publication: a view of the shared buffer, no copy. */
export function sharedValues(shared: SharedWeights, tensor: SharedWeights["tensors"][number]): Float32Array {
  return new Float32Array(shared.buffer, tensor.offset * Float32Array.BYTES_PER_ELEMENT, tensor.length);
}

/** The tensors of shared weights, fresh on this thread's tensor heap; the caller owns them. */
export function sharedWeightMap(shared: SharedWeights): WeightMap {
  return new Map(shared.tensors.map((t) => [t.name, tf.tensor(sharedValues(shared, t), t.shape)]));
}

/**
 * A resident model published to worker threads: its config, the calling
 * thread's tensor backend, its outer weights and one publication per block
 * position (a block at several positions, as a CRaSh emulator's, is
 * published once). What the scoring pool and the tuning replicas send
 * (docs/DISTRIBUTED.md "How tune and eval use the cores").
 */
export interface SharedModel {
  /** The config.json object. */
  config: Record<string, unknown>;
  backend: string | undefined;
  outer: SharedWeights;
  /** One per block position, in forward order. */
  blocks: SharedWeights[];
}

/** Publishes `model`'s weights once into shared memory ({@link SharedModel}); a repeated block map is shared once. */
export function shareModel(
  model: { cfg: ModelConfig; outer: WeightMap; blocks: readonly WeightMap[] },
  backend: string | undefined,
): SharedModel {
  const published = new Map<WeightMap, SharedWeights>();
  const share = (w: WeightMap) => published.get(w) ?? published.set(w, shareWeights(w)).get(w)!;
  return { config: model.cfg.raw, backend, outer: shareWeights(model.outer), blocks: model.blocks.map(share) };
}

/**
 * A worker's model from a {@link SharedModel}: the backend started, the
 * architecture and config parsed, and tensors on this thread's heap, one set
 * per publication (a block at several positions keeps one); the caller owns
 * them.
 */
export async function modelFromShared(
  shared: SharedModel,
): Promise<{ arch: Architecture; cfg: ModelConfig; outer: WeightMap; blocks: WeightMap[] }> {
  await initBackend(shared.backend, true);
  const arch = architectureFor(String(shared.config.model_type));
  const built = new Map<number, WeightMap>(); // by publication
  const weights = (s: SharedWeights) => built.get(s.id) ?? built.set(s.id, sharedWeightMap(s)).get(s.id)!;
  return { arch, cfg: arch.parseConfig(shared.config), outer: sharedWeightMap(shared.outer), blocks: shared.blocks.map(weights) };
}

/**
 * The buffers of every typed array in `value` (objects and arrays walked)
 * that spans its whole, unshared buffer: the transfer list that moves a
 * chunk, a block job or a compressed block to another thread without copying
 * its arrays. Arrays that are views into a larger buffer are left to be
 * copied; arrays over a `SharedArrayBuffer` (the scratch pool's, shared
 * weights) are sent shared (`WorkerPool.call`).
 */
export function movableBuffers(value: unknown): ArrayBuffer[] {
  const found = new Set<ArrayBuffer>();
  const walk = (v: unknown): void => {
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) found.add(v.buffer);
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(value);
  return [...found];
}
