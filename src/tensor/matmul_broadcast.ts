/**
 * Batch broadcasting of `matMul` (docs/DESIGN.md "Tensors").
 *
 * tfjs' BatchMatMul kernels (cpu and wasm alike) flatten each operand's batch
 * dimensions and read operand batch `i % batchSize` for output batch `i`.
 * That is right only when the operand's batch shape is some leading 1s
 * followed by the trailing dimensions of the output's batch shape
 * (`[3]` or `[1, 3]` against `[2, 3]`); `[2, 1]` against `[1, 3]` silently
 * gives wrong numbers. The wasm fix and the gradient fix test for that here
 * and broadcast explicitly when it fails.
 *
 * @module
 */

/**
 * True when an operand with batch shape `batch` may be read modulo its size
 * for the output batch shape `outBatch` (leading 1s, then a suffix of
 * `outBatch`).
 */
export function isModuloBroadcast(batch: readonly number[], outBatch: readonly number[]): boolean {
  let start = 0;
  while (start < batch.length && batch[start] === 1) start++;
  const rest = batch.slice(start);
  if (rest.length > outBatch.length) return false;
  const tail = outBatch.slice(outBatch.length - rest.length);
  return rest.every((d, i) => d === tail[i]);
}
