/**
 * A pool of `worker_threads` workers answering requests (docs/DESIGN.md "Scale":
 * one machine, a worker pool behind the operators and the data-parallel
 * trainer).
 *
 * One module serves as the worker: it calls {@link serveRequests} with a
 * handler, and the pool sends it requests either to a chosen worker
 * ({@link WorkerPool.call}: data parallelism, where worker `k` keeps a
 * replica) or to the next idle one ({@link WorkerPool.run}: a task queue).
 * Messages are structured-cloned; list `ArrayBuffer`s in `transfer` to move
 * them without a copy, or share a `SharedArrayBuffer`. Every shared array a
 * message holds is handed over to the receiver (`handOverScratch`,
 * `src/linalg/scratch_arrays.ts`): the scratch pool's arrays are shared, and
 * the sender's pool must not hand them out again.
 *
 * Runtimes: Deno 2 runs a `.ts` entry directly through `node:worker_threads`.
 * Node cannot, and on Node 20 a worker ignores `--import tsx` in `execArgv`,
 * so under Node every worker starts in `worker_boot.mjs`, which registers
 * tsx's loader (for `.ts` entries) and imports the entry.
 *
 * Threads: the pool runs one worker per core, so a native BLAS must not start
 * a thread per core in each of them. OpenBLAS is loaded once per process and
 * reads `OPENBLAS_NUM_THREADS` from the process's C environment, which a
 * worker's `env` option does not reach (only its `process.env` copy), so
 * {@link WorkerPool.start} sets `OPENBLAS_NUM_THREADS=1` in this process's
 * environment when unset, before the first worker starts. The wasm backend is
 * single-threaded under Node and Deno anyway.
 *
 * @module
 */
import { availableParallelism } from "node:os";
import process from "node:process";
import v8 from "node:v8";
import { parentPort, type Transferable, Worker } from "node:worker_threads";
import { adoptSpareScratch, collectSpareScratch, handOverScratch, takeSpareScratch } from "../linalg/scratch_arrays.ts";
import { serialServer } from "./serial_server.ts";
import { type ClaimTicket, takeClaim } from "./claim.ts";

/** What a handler returns: the reply value and the buffers to move with it. */
export interface Reply<Res> {
  value: Res;
  transfer?: Transferable[];
}

type WireReply = { type: "ready" } | { type: "reply"; id: number; value: unknown; spare?: Float32Array[] } | {
  type: "passed";
  id: number;
  spare?: Float32Array[];
} | {
  type: "error";
  id: number;
  message: string;
  stack?: string;
};

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  busy: number;
  /** Set once the worker died; every later call fails with it. */
  failure?: Error;
}

/** Options of {@link WorkerPool.start}. */
export interface PoolOptions {
  /** Number of workers, default the machine's available parallelism. */
  size?: number;
}

const isDeno = "Deno" in globalThis;

/** The default worker count: the cores this process may use. */
export function defaultWorkerCount(): number {
  return availableParallelism();
}

/**
 * Lets every V8 heap of the process grow 4× between full collections
 * (`--heap-growing-percent=300`; V8's own factor gave about 1.4× here), from
 * the first pool on. Each isolate holds about 60 MB of modules and tfjs; at
 * V8's factor a 2-slot GradOT build ran 92 full collections, 51 of them for
 * that slack alone, and their concurrent marking took 4.9 CPU-seconds of
 * helper threads that compete with the slots for the cores, where one thread's
 * build leaves them a free core (docs/DISTRIBUTED.md "Where 2 slots wait").
 * Where the runtime does not take V8 flags this does nothing.
 */
function widenHeapGrowth(): void {
  try {
    v8.setFlagsFromString("--heap-growing-percent=300");
  } catch {
    // Not every runtime passes flags to V8: its growth stays V8's own.
  }
}

/** Workers running one entry module, addressed by index or as a queue. */
export class WorkerPool<Req, Res> {
  readonly #slots: Slot[];
  readonly #queue: Array<() => void> = [];
  #nextId = 1;
  #closed = false;

  private constructor(slots: Slot[]) {
    this.#slots = slots;
  }

  /**
   * Starts `size` workers on `entry` (a module calling {@link serveRequests})
   * and resolves once every one has loaded it.
   *
   * @throws Error naming the entry if a worker fails to load it
   */
  static async start<Req, Res>(entry: URL, options: PoolOptions = {}): Promise<WorkerPool<Req, Res>> {
    const size = options.size ?? defaultWorkerCount();
    if (!Number.isInteger(size) || size < 1) {
      throw new Error(`Worker pool size must be a positive integer, got ${size}`);
    }
    process.env.OPENBLAS_NUM_THREADS ??= "1"; // process-wide: see the module doc
    widenHeapGrowth();
    collectSpareScratch();
    const slots: Slot[] = [];
    const ready: Promise<void>[] = [];
    for (let k = 0; k < size; k++) {
      const worker = isDeno
        ? new Worker(entry)
        : new Worker(new URL("./worker_boot.mjs", import.meta.url), { workerData: { entry: entry.href } });
      const slot: Slot = { worker, pending: new Map(), busy: 0 };
      slots.push(slot);
      ready.push(waitReady(slot, k, entry));
    }
    const pool = new WorkerPool<Req, Res>(slots);
    try {
      await Promise.all(ready);
    } catch (e) {
      await pool.close();
      throw e;
    }
    slots.forEach((slot, k) => pool.#listen(slot, k));
    return pool;
  }

  /** Number of workers. */
  get size(): number {
    return this.#slots.length;
  }

  /** Sends `request` to worker `index` and resolves with its reply. */
  call(index: number, request: Req, transfer: Transferable[] = []): Promise<Res> {
    return this.#send(index, request, transfer) as Promise<Res>;
  }

  /**
   * Sends `request` to worker `index`, which serves it only if it takes the
   * claim `ticket` is for when its turn comes (`takeClaim`); resolves with
   * its reply, or with undefined when another slot had taken the claim
   * (`SlotPool.offer`). Nothing is moved: the other slot may serve it.
   */
  offer(index: number, request: Req, ticket: ClaimTicket): Promise<Res | undefined> {
    return this.#send(index, request, [], ticket) as Promise<Res | undefined>;
  }

  #send(index: number, request: Req, transfer: Transferable[], claim?: ClaimTicket): Promise<unknown> {
    const slot = this.#slots[index];
    if (!slot) throw new Error(`Worker index ${index} is out of range for a pool of ${this.#slots.length}`);
    if (this.#closed) return Promise.reject(new Error("The worker pool is closed"));
    if (slot.failure) return Promise.reject(slot.failure);
    const id = this.#nextId++;
    slot.busy += 1;
    return new Promise<unknown>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      const spare = takeSpareScratch();
      handOverScratch(request);
      slot.worker.postMessage({ id, request, spare, ...(claim ? { claim } : {}) }, transfer);
    }).finally(() => {
      slot.busy -= 1;
      this.#queue.shift()?.();
    });
  }

  /** Sends `request` to the first idle worker (waiting for one, in order) and resolves with its reply. */
  async run(request: Req, transfer: Transferable[] = []): Promise<Res> {
    let index = this.#idle();
    while (index < 0 && !this.#closed) {
      await new Promise<void>((wake) => this.#queue.push(wake));
      index = this.#idle();
    }
    if (this.#closed) throw new Error("The worker pool is closed");
    return this.call(index, request, transfer);
  }

  /**
   * Sends `request` at once to the worker with the fewest requests pending
   * (the lowest index on a tie), where it waits its turn: unlike
   * {@link run}, no worker idles while this thread is busy with other work
   * (a calibration pool queues a block's chunks while it sums statistics).
   */
  post(request: Req, transfer: Transferable[] = []): Promise<Res> {
    const best = this.leastBusy();
    if (!best) return Promise.reject(this.#slots[0].failure ?? new Error("The worker pool has no live worker"));
    return this.call(best.index, request, transfer);
  }

  /**
   * The live worker with the least `load` (by default the fewest requests
   * pending; the lowest index on a tie) and that load, where {@link post}
   * would send a request; undefined when no worker is live. A caller
   * weighing requests by their work passes its own `load` (`SlotPool.post`).
   */
  leastBusy(load: (index: number) => number = (k) => this.#slots[k].busy): { index: number; load: number } | undefined {
    let best = -1;
    this.#slots.forEach((slot, k) => {
      if (!slot.failure && (best < 0 || load(k) < load(best))) best = k;
    });
    return best < 0 ? undefined : { index: best, load: load(best) };
  }

  /** Terminates every worker; pending calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new Error("The worker pool was closed");
    for (const slot of this.#slots) failAll(slot, closed);
    for (const wake of this.#queue.splice(0)) wake();
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
  }

  #idle(): number {
    return this.#slots.findIndex((slot) => slot.busy === 0 && !slot.failure);
  }

  #listen(slot: Slot, k: number): void {
    slot.worker.on("message", (message: WireReply) => {
      if (message.type === "ready") return;
      const pending = slot.pending.get(message.id);
      if (!pending) return;
      slot.pending.delete(message.id);
      if (message.type === "reply" || message.type === "passed") {
        if (message.spare) adoptSpareScratch(message.spare);
        pending.resolve(message.type === "reply" ? message.value : undefined);
      } else {
        const error = new Error(`Worker ${k} failed: ${message.message}`);
        if (message.stack) error.stack = `${error.message}\n(worker stack) ${message.stack}`;
        pending.reject(error);
      }
    });
    slot.worker.on("error", (e: Error) => failAll(slot, new Error(`Worker ${k} crashed: ${e.message}`, { cause: e })));
    slot.worker.on("exit", (code: number) => {
      if (!this.#closed) failAll(slot, new Error(`Worker ${k} exited with code ${code}`));
    });
  }
}

function failAll(slot: Slot, error: Error): void {
  slot.failure ??= error;
  for (const pending of slot.pending.values()) pending.reject(error);
  slot.pending.clear();
}

function waitReady(slot: Slot, k: number, entry: URL): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: WireReply) => {
      if (message.type !== "ready") return;
      cleanup();
      resolve();
    };
    const onError = (e: Error) => {
      cleanup();
      slot.failure = new Error(`Worker ${k} cannot load "${entry.href}": ${e.message}`, { cause: e });
      reject(slot.failure);
    };
    const onExit = (code: number) => {
      cleanup();
      slot.failure = new Error(`Worker ${k} exited with code ${code} while loading "${entry.href}"`);
      reject(slot.failure);
    };
    const cleanup = () => {
      slot.worker.off("message", onMessage);
      slot.worker.off("error", onError);
      slot.worker.off("exit", onExit);
    };
    slot.worker.on("message", onMessage);
    slot.worker.on("error", onError);
    slot.worker.on("exit", onExit);
  });
}

/**
 * Makes the calling module a pool worker: every request is passed to
 * `handler`, one at a time in arrival order but those `first` holds for,
 * which go ahead of the others waiting (`serialServer`), and its reply (or
 * error message) goes back to the pool. An offered request
 * ({@link WorkerPool.offer}) is passed over, unserved, when another slot
 * took its claim first. Call it once, at the worker module's top level.
 *
 * @throws Error if called outside a worker thread
 */
export function serveRequests<Req, Res>(
  handler: (request: Req) => Reply<Res> | Promise<Reply<Res>>,
  first?: (request: Req) => boolean,
): void {
  const port = parentPort;
  if (!port) throw new Error("serveRequests() must run inside a worker thread");
  collectSpareScratch();
  const serve = serialServer<{ id: number; request: Req; spare?: Float32Array[]; claim?: ClaimTicket }>(async ({ id, request, spare, claim }) => {
    if (spare) adoptSpareScratch(spare);
    if (claim && !takeClaim(claim)) {
      port.postMessage({ type: "passed", id, spare: takeSpareScratch() } satisfies WireReply);
      return;
    }
    try {
      const { value, transfer } = await handler(request);
      const ours = takeSpareScratch();
      handOverScratch(value);
      port.postMessage({ type: "reply", id, value, spare: ours } satisfies WireReply, transfer ?? []);
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      port.postMessage({ type: "error", id, message: error.message, stack: error.stack } satisfies WireReply);
    }
  }, first && (({ request }) => first(request)));
  port.on("message", serve);
  port.postMessage({ type: "ready" } satisfies WireReply);
}
