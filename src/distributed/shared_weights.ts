/**
 * A weight map copied once into a `SharedArrayBuffer`, so every calibration
 * worker reads the same bytes without a copy per message
 * (docs/DISTRIBUTED.md "All cores of one machine").
 *
 * @module
 */
import type { WeightMap } from "../model/types.ts";
import { tf } from "../tensor/backend.ts";
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
 * Copies `weights` (float32 tensors) into a new shared buffer, in the map's
 * order, straight from the tensor heap: no `dataSync` copy in between, on
 * the building thread that every block of a pool build passes through.
 */
export function shareWeights(weights: WeightMap): SharedWeights {
  let length = 0;
  const tensors = [...weights].map(([name, t]) => {
    const entry = { name, shape: [...t.shape], offset: length, length: t.size };
    length += t.size;
    return entry;
  });
  const buffer = new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT);
  const all = new Float32Array(buffer);
  // Heap views, copied at once: no op runs between, so the heap cannot grow under them.
  for (const { name, offset } of tensors) all.set(peekValues(weights.get(name)!), offset);
  return { id: ++published, buffer, tensors };
}

/** The tensors of shared weights, fresh on this thread's tensor heap; the caller owns them. */
export function sharedWeightMap(shared: SharedWeights): WeightMap {
  return new Map(shared.tensors.map(({ name, shape, offset, length }) =>
    [name, tf.tensor(new Float32Array(shared.buffer, offset * Float32Array.BYTES_PER_ELEMENT, length), shape)]
  ));
}

/**
 * The buffer under `view`, to move it to another thread without a copy
 * (`postMessage`'s transfer list), which takes only an unshared buffer.
 *
 * @throws Error when the view is over a `SharedArrayBuffer`
 */
export function movableBuffer(view: ArrayBufferView): ArrayBuffer {
  if (!(view.buffer instanceof ArrayBuffer)) throw new Error("A shared buffer cannot be moved to another thread; it is shared already");
  return view.buffer;
}

/**
 * The buffers of every typed array in `value` (objects and arrays walked)
 * that spans its whole, unshared buffer: the transfer list that moves a
 * block job or a compressed block to another thread without copying its
 * arrays. Arrays that are views into a larger buffer are left to be copied.
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
