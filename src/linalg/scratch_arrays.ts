/**
 * Float32 arrays handed back by finished work and handed out again to the
 * next block's work of the same size, instead of fresh memory
 * (docs/GRADOT.md "Benchmarks": reused memory). A GradOT build makes the
 * same arrays block after block: the backward's per-chunk `x` and `γ` rows,
 * KFAC's running sums (two 3072² on OPT-125M) and their bias-augmented
 * inputs, the SVD's work copy, scoring's products. Fresh, each costs page
 * faults on first touch; on a virtual machine that returns freed pages to
 * its host, about 1.5 ms per MB, 1.3 GB a build on OPT-125M before this pool.
 *
 * Only arrays this pool handed out ({@link takeScratch}) come back into it,
 * each once, or arrays moved back from another thread that is done with them
 * ({@link adoptScratch}): whoever gives one back promises nothing reads or
 * writes it afterwards. An array given by anyone else (a caller's own matrix in a
 * chunk record), or never given back, is left to the garbage collector as
 * before. The pool keeps at most {@link SCRATCH_POOL_BYTES} of idle arrays.
 *
 * The arrays are views of whole `SharedArrayBuffer`s. A worker pool sends them
 * to another thread by sharing, not by moving (docs/DISTRIBUTED.md "Where 2
 * slots wait"): V8 counts a moved buffer as new external memory of the
 * isolate that receives it, and every 64 MB of it starts a full garbage
 * collection there, while a shared one is not counted. An array sent away
 * stays readable here, so the sender hands it over ({@link handOverScratch})
 * and this pool no longer takes it back, as it skips a moved (emptied) one.
 *
 * @module
 */

/** Bytes of idle arrays the pool keeps at most (they count towards the process's memory). */
export const SCRATCH_POOL_BYTES = 192 * 2 ** 20;

/** Idle arrays by length, most recently given last. */
const idle = new Map<number, Float32Array[]>();
let idleBytes = 0;
/** Arrays handed out and not given back yet: the only ones {@link giveScratch} takes. */
const loaned = new WeakSet<Float32Array>();
/** The buffers of arrays sent to another thread: that thread's now, never taken back here. */
const handedOver = new WeakSet<SharedArrayBuffer>();

/** A `length`-value array whose contents are whatever its last user left. */
export function takeScratch(length: number): Float32Array {
  const reused = idle.get(length)?.pop();
  if (reused) idleBytes -= reused.byteLength;
  const array = reused ?? new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
  loaned.add(array);
  return array;
}

/** A `length`-value array of zeros (a reused one is cleared). */
export function takeZeroedScratch(length: number): Float32Array {
  const reused = (idle.get(length)?.length ?? 0) > 0;
  const array = takeScratch(length);
  return reused ? array.fill(0) : array;
}

/**
 * Gives arrays handed out by {@link takeScratch} back for reuse; any other
 * array, one given back already or one moved to another thread is ignored.
 * Beyond the pool's limit a given array is dropped.
 */
export function giveScratch(...arrays: Float32Array[]): void {
  for (const array of arrays) if (loaned.delete(array)) keep(array);
}

/**
 * Takes arrays this thread now holds alone into the pool: arrays another
 * thread was sent, read and moved back (a calibration worker's spent
 * request arrays), which {@link takeScratch} never handed out here.
 */
export function adoptScratch(...arrays: Float32Array[]): void {
  for (const array of arrays) {
    loaned.delete(array); // this thread's own slot hands back the very arrays it was lent
    if (array.byteOffset === 0 && array.byteLength === array.buffer.byteLength && !idle.get(array.length)?.includes(array)) keep(array);
  }
}

/**
 * Marks every shared buffer under the typed arrays in `message` (objects and
 * arrays walked) as sent to another thread, which now owns those arrays:
 * this thread's pool will not take them back, though their memory stays
 * readable here (a moved buffer is emptied instead, and the pool skips empty
 * arrays). The worker pool calls it on every message it sends.
 */
export function handOverScratch(message: unknown, seen = new WeakSet<object>()): void {
  if (message === null || typeof message !== "object" || seen.has(message)) return; // a structured clone may hold cycles
  seen.add(message);
  if (ArrayBuffer.isView(message)) {
    if (message.buffer instanceof SharedArrayBuffer) handedOver.add(message.buffer);
  } else for (const value of Array.isArray(message) ? message : Object.values(message)) handOverScratch(value, seen);
}

/** Keeps an idle array unless it is another thread's (moved, so empty, or handed over) or the pool is full. */
function keep(array: Float32Array): void {
  if (array.length === 0 || (array.buffer instanceof SharedArrayBuffer && handedOver.has(array.buffer)) || idleBytes + array.byteLength > SCRATCH_POOL_BYTES) return;
  const stack = idle.get(array.length);
  if (stack) stack.push(array);
  else idle.set(array.length, [array]);
  idleBytes += array.byteLength;
}

/** Bytes of idle arrays the pool holds now. */
export function scratchBytes(): number {
  return idleBytes;
}
