/**
 * Block-boundary activations kept outside the tensor heap (the wasm heap is
 * capped at 4 GiB) as `[N, T, d]` Float32Arrays, processed in chunks of
 * sequences so only one chunk's tensors are resident.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import type { CalibrationSet } from "../records/records.ts";

/** `[from, to)` sequence ranges of at most `chunk` sequences covering `sequences`. */
export function sequenceChunks(sequences: number, chunk: number): Array<[number, number]> {
  if (!(chunk >= 1)) throw new RangeError(`Chunk size must be at least 1 sequence, got ${chunk}`);
  const ranges: Array<[number, number]> = [];
  for (let from = 0; from < sequences; from += chunk) ranges.push([from, Math.min(sequences, from + chunk)]);
  return ranges;
}

/**
 * The default chunk: as many sequences as fit in about 512 tokens (at least
 * one). Measured on an OPT-125M-shaped build (`offtune bench gradot`): 512
 * rows keep OpenBLAS at full speed while the VJP's transient tensors stay a
 * quarter of a 2048-token chunk's (peak RSS 1.8 GB instead of 2.6 GB).
 */
export function defaultChunk(calibration: CalibrationSet): number {
  return Math.max(1, Math.floor(512 / calibration.length));
}

/** Sequences `[from, to)` of an `[N, T, d]` array, as a `[to - from, T, d]` tensor. */
export function chunkTensor(data: Float32Array, from: number, to: number, t: number, d: number): Tensor {
  return tf.tensor3d(data.subarray(from * t * d, to * t * d), [to - from, t, d]);
}

/** Token ids of sequences `[from, to)` as an int32 `[to - from, T]` tensor. */
export function chunkIds(calibration: CalibrationSet, from: number, to: number): Tensor {
  const t = calibration.length;
  return tf.tensor2d(calibration.ids.subarray(from * t, to * t), [to - from, t], "int32");
}

/**
 * Applies `fn` to every chunk of sequences and gathers the `[n, T, d]`
 * results into one `[N, T, d]` array. `fn`'s result is disposed here.
 */
export function mapChunks(
  sequences: number,
  t: number,
  d: number,
  chunk: number,
  fn: (from: number, to: number) => Tensor,
): Float32Array {
  const out = new Float32Array(sequences * t * d);
  for (const [from, to] of sequenceChunks(sequences, chunk)) {
    const y = fn(from, to); // [n, T, d]
    out.set(y.dataSync() as Float32Array, from * t * d);
    y.dispose();
  }
  return out;
}
