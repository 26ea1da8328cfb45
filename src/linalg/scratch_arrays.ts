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
 * Arrays flow one way between a pool's threads: a KFAC owner takes in the
 * rows every slot made, fills its pool and drops the rest, while the thread
 * that made them makes fresh ones. So in a worker pool's threads
 * ({@link collectSpareScratch}) an array given back past the limit is kept
 * as spare instead, and the next message to or from another thread carries
 * it there, which takes it in if it has room (docs/DISTRIBUTED.md "Spare
 * arrays go back").
 *
 * @module
 */

/** Bytes of idle arrays the pool keeps at most (they count towards the process's memory). */
export const SCRATCH_POOL_BYTES = 192 * 2 ** 20;

/** Bytes of arrays past the pool's limit kept to be sent to another thread at most ({@link takeSpareScratch}). */
export const SPARE_SCRATCH_BYTES = 64 * 2 ** 20;

/** Arrays given back past the pool's limit, for the next message to another thread. */
let spare: Float32Array[] = [];
let spareBytes = 0;
/** Whether this thread sends messages to another that takes spare arrays in ({@link collectSpareScratch}). */
let spareWanted = false;

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

/**
 * Keeps arrays given back past the pool's limit, up to
 * {@link SPARE_SCRATCH_BYTES}, for another thread ({@link takeSpareScratch}),
 * instead of dropping them. Called by a thread of a worker pool (`WorkerPool`,
 * src/distributed/worker_pool.ts), whose messages carry them; a thread with
 * none keeps no spare.
 */
export function collectSpareScratch(): void {
  spareWanted = true;
}

/**
 * The arrays this thread gave back past its pool's limit, now handed over
 * ({@link handOverScratch}) to be sent to another thread (which adopts them:
 * `adoptSpareScratch`), so a thread that receives another's arrays (a KFAC
 * owner) does not drop them while the thread that made them makes fresh ones.
 */
export function takeSpareScratch(): Float32Array[] {
  const taken = spare;
  spare = [];
  spareBytes = 0;
  handOverScratch(taken);
  return taken;
}

/** Takes arrays another thread sent as spare ({@link takeSpareScratch}) into this thread's pool, as far as it has room. */
export function adoptSpareScratch(arrays: readonly Float32Array[]): void {
  for (const array of arrays) {
    if (array.buffer instanceof SharedArrayBuffer) handedOver.delete(array.buffer); // sent here once, given back now
    keep(array, false);
  }
}

/** Keeps an idle array unless it is another thread's (moved, so empty, or handed over) or the pool is full; past the limit, as spare for another thread when `spareLeft`. */
function keep(array: Float32Array, spareLeft = true): void {
  if (array.length === 0 || (array.buffer instanceof SharedArrayBuffer && handedOver.has(array.buffer))) return;
  if (idleBytes + array.byteLength > SCRATCH_POOL_BYTES) {
    if (spareLeft && spareWanted && array.buffer instanceof SharedArrayBuffer && spareBytes + array.byteLength <= SPARE_SCRATCH_BYTES) {
      spare.push(array);
      spareBytes += array.byteLength;
    }
    return;
  }
  const stack = idle.get(array.length);
  if (stack) stack.push(array);
  else idle.set(array.length, [array]);
  idleBytes += array.byteLength;
}

/** Bytes of idle arrays the pool holds now. */
export function scratchBytes(): number {
  return idleBytes;
}
