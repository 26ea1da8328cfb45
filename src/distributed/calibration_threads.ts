/**
 * The worker threads of a calibration pool, started before there is a model
 * to ready them for (`CalibrationPool.start` takes them): loading a thread's
 * modules takes over a second, which `build-emulator --workers n` overlaps
 * with its own start (loading this thread's modules, opening and hashing the
 * model, reading the calibration set) instead of the forward's first blocks
 * (docs/DISTRIBUTED.md "How a GradOT build uses the cores"). This module
 * loads no tensor code, so the CLI can start the threads first thing.
 *
 * @module
 */
import type { CalibrationReply, CalibrationRequest } from "./calibration_handler.ts";
import { keepFreedMemory } from "./freed_memory.ts";
import { WorkerPool } from "./worker_pool.ts";

/** The `size - 1` worker threads of a calibration pool of `size` slots (the last slot is the calling thread). */
export class CalibrationThreads {
  /** The threads, once every one has loaded (rejects with a thread's start error). */
  readonly workers: Promise<WorkerPool<CalibrationRequest, CalibrationReply>>;

  /**
   * Starts `size - 1` worker threads. The process keeps the memory it frees
   * from then on (`keepFreedMemory`): the pool's threads pass arrays of MBs
   * back and forth, which would otherwise be fresh pages each time.
   *
   * @throws Error when `size` is below 2
   */
  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 2) throw new Error(`A calibration pool has at least 2 slots (a worker and this thread), got ${size}`);
    keepFreedMemory();
    this.workers = WorkerPool.start<CalibrationRequest, CalibrationReply>(new URL("./calibration_worker.ts", import.meta.url), { size: size - 1 });
    this.workers.catch(() => {}); // reported to whoever awaits them
  }

  /** Terminates the threads (nothing when they failed to start); a pool readied on them is closed with them. */
  close(): Promise<void> {
    return this.workers.then((workers) => workers.close(), () => {});
  }
}
