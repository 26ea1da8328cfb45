/**
 * Slots serving one kind of request: worker threads of a {@link WorkerPool}
 * and, optionally, the calling thread as the last slot (a {@link LocalSlot}),
 * every slot with the same handler, so a result does not depend on the slot
 * that made it (docs/DISTRIBUTED.md "All cores of one machine"). This is the
 * routing a GradOT build's calibration pool, the multiple-choice scorer and
 * the tuner share: a request goes to a chosen slot ({@link SlotPool.call}) or
 * at once to the one with the least work queued ({@link SlotPool.post}; by
 * default the fewest pending).
 *
 * Why the calling thread serves too: on 2 cores, `n` slots are `n - 1`
 * worker threads beside the calling thread, not `n` beside it; a further
 * isolate costs its start (about 1.7 CPU-seconds), its compiler and garbage
 * collector threads and its heap, and would compete with the others for the
 * cores while the calling thread waits.
 *
 * @module
 */
import type { Transferable } from "node:worker_threads";
import { LocalSlot } from "./local_slot.ts";
import { claimHolder, newClaimCell } from "./claim.ts";
import { type Reply, WorkerPool } from "./worker_pool.ts";

/**
 * A request's cost in whole millionths of its unit. Queued work is summed in
 * these, exactly: in floating point, costs added and taken back in another
 * order leave rounding behind (0.1 + 0.2 - 0.1 - 0.2 is 2.8e-17), and a
 * worker one request ahead of an idle calling thread would then win the tie
 * by an ulp: the last two blocks of a 2-slot GradOT build were compressed
 * one after the other on the worker thread instead of side by side
 * (docs/DISTRIBUTED.md "Where 2 slots wait").
 */
function costUnits(cost: number): number {
  return Math.round(cost * 1e6);
}

/** Why `cost` cannot weigh a request (negative, or not a finite number), if it cannot. */
function costError(cost: number): RangeError | undefined {
  return cost >= 0 && Number.isFinite(cost) ? undefined : new RangeError(`A request's cost must be a finite number of 0 or more, got ${cost}`);
}

/** An offered request not yet settled by every slot it went to ({@link SlotPool.offer}). */
interface Offer {
  cell: Int32Array;
  units: number;
  /** The slots whose queued work still counts it. */
  counted: Set<number>;
}

/**
 * The first value `replies` resolve with that is not undefined (the slot
 * that took an offered request's claim); when none comes, the first error
 * (the taker failed), else an error saying no slot served it.
 */
function firstServed<T>(replies: ReadonlyArray<Promise<T | undefined>>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let left = replies.length;
    let failure: { error: unknown } | undefined;
    for (const reply of replies) {
      reply.then(
        (value) => value !== undefined && resolve(value),
        (error) => void (failure ??= { error }),
      ).finally(() => {
        if (--left === 0) reject(failure ? failure.error : new Error("No slot served an offered request"));
      });
    }
  });
}

/** Options of {@link SlotPool.start}: how many worker threads, and whether the calling thread serves a slot too (docs/DISTRIBUTED.md "How a GradOT build uses the cores"). */
export interface SlotPoolOptions<Req, Res> {
  /** Worker threads to start (0: the calling thread alone, which needs `local`). */
  workers: number;
  /** The handler the calling thread serves its slot with; none: the workers alone. */
  local?: (request: Req) => Reply<Res> | Promise<Reply<Res>>;
}

/**
 * Worker threads on one entry module and, optionally, the calling thread as
 * the last slot: the routing the calibration pool, the scoring pool and the
 * tuning engine share, so none keeps its own copy (docs/DISTRIBUTED.md "How tune and eval use the cores").
 */
export class SlotPool<Req, Res> {
  readonly #pool: WorkerPool<Req, Res> | undefined;
  readonly #local: LocalSlot<Req, Res> | undefined;
  /**
   * Each slot's work sent and not answered: the sum of its requests' costs
   * (1 each unless the caller weighs them), in whole millionths of the cost
   * unit ({@link costUnits}), so sums and differences are exact.
   */
  readonly #queued: number[];
  /** Offered requests some slot still counts: its work drops by those another slot took (`#load`). */
  readonly #offers = new Set<Offer>();

  private constructor(pool: WorkerPool<Req, Res> | undefined, local: LocalSlot<Req, Res> | undefined) {
    this.#pool = pool;
    this.#local = local;
    this.#queued = new Array(this.size).fill(0);
  }

  /**
   * Starts `options.workers` workers on `entry` (a module calling
   * `serveRequests` with the handler `options.local` is) and readies the
   * calling thread's slot; resolves once every worker has loaded.
   *
   * @throws Error when a worker cannot start, or no slot would serve
   */
  static async start<Req, Res>(entry: URL, options: SlotPoolOptions<Req, Res>): Promise<SlotPool<Req, Res>> {
    const { workers, local } = options;
    if (!Number.isInteger(workers) || workers < 0) throw new Error(`Worker threads must be a whole number, got ${workers}`);
    if (workers === 0) return SlotPool.over(undefined, local); // throws without `local`
    return SlotPool.over(await WorkerPool.start<Req, Res>(entry, { size: workers }), local);
  }

  /**
   * Slots over worker threads started already (`pool`, if any) and, with
   * `local`, the calling thread as the last, serving the requests `first`
   * holds for ahead of the others waiting, as the workers' `serveRequests`
   * are told to.
   */
  static over<Req, Res>(
    pool: WorkerPool<Req, Res> | undefined,
    local?: (request: Req) => Reply<Res> | Promise<Reply<Res>>,
    first?: (request: Req) => boolean,
  ): SlotPool<Req, Res> {
    if (!pool && !local) throw new Error("A slot pool needs a worker thread or the calling thread's slot");
    return new SlotPool(pool, local && new LocalSlot(local, first));
  }

  /** Number of slots: the worker threads, then the calling thread's when it serves. */
  get size(): number {
    return (this.#pool?.size ?? 0) + (this.#local ? 1 : 0);
  }

  /**
   * Sends `request` to slot `k` (the last is the calling thread's, when it
   * serves); resolves with the reply. `cost` is its work in the unit
   * {@link post}'s costs use (default 1: every request alike).
   */
  call(k: number, request: Req, transfer: readonly Transferable[] = [], cost = 1): Promise<Res> {
    const workers = this.#pool?.size ?? 0;
    const local = k === workers ? this.#local : undefined;
    if (!local && (!this.#pool || k < 0 || k >= workers)) return Promise.reject(new Error(`Slot ${k} is out of range for a pool of ${this.size}`));
    const invalid = costError(cost);
    if (invalid) return Promise.reject(invalid);
    const units = costUnits(cost);
    this.#queued[k] += units;
    const reply = local ? local.call(request) : this.#pool!.call(k, request, [...transfer]);
    return reply.finally(() => {
      this.#queued[k] -= units;
    });
  }

  /**
   * Sends `request` at once to the worker with the least work queued, or to
   * the calling thread's slot when every worker has at least the request's
   * `cost` more queued than it. Work is the sum of the pending requests'
   * costs; with the default cost of 1 it is their count, so the calling
   * thread takes about as many as a worker (with a margin of two more it
   * took one chunk of a block's four on 2 cores, and the worker thread held
   * the build up, in the backward and, once the worker threads started
   * before the build, in the forward too); a calibration pool weighs its
   * requests by their measured seconds, so a block's compression (several
   * chunks' work) counts as such (docs/DISTRIBUTED.md "How a GradOT build
   * uses the cores"). Requests to one slot run in the order posted, but
   * those its handler serves first.
   */
  post(request: Req, transfer: readonly Transferable[] = [], cost = 1): Promise<Res> {
    const worker = this.#pool?.leastBusy((k) => this.#load(k));
    const local = this.size - 1;
    if (this.#local && (!worker || this.#load(local) + costUnits(cost) <= worker.load)) return this.call(local, request, transfer, cost);
    if (!worker) return Promise.reject(new Error("The slot pool has no live worker"));
    return this.call(worker.index, request, transfer, cost);
  }

  /**
   * Offers `request` to the worker with the least work queued and to the
   * calling thread's slot at once: the first of the two whose turn comes
   * takes its claim and serves it, the other passes it over
   * (src/distributed/claim.ts), so it waits on neither slot's cost
   * estimates. Until one takes it, both count its `cost` as queued. Nothing
   * is moved with it: either slot may read it. Without the calling thread's
   * slot or a live worker it is posted ({@link post}). A GradOT build offers
   * its forward and backward chunks (docs/DISTRIBUTED.md "How a GradOT build
   * uses the cores").
   */
  offer(request: Req, cost = 1): Promise<Res> {
    const worker = this.#pool?.leastBusy((k) => this.#load(k));
    if (!this.#local || !worker) return this.post(request, [], cost);
    const invalid = costError(cost);
    if (invalid) return Promise.reject(invalid);
    const cell = newClaimCell();
    const local = this.size - 1;
    const offer: Offer = { cell, units: costUnits(cost), counted: new Set([worker.index, local]) };
    this.#offers.add(offer);
    const settled = (k: number) => () => {
      this.#queued[k] -= offer.units;
      offer.counted.delete(k);
      if (offer.counted.size === 0) this.#offers.delete(offer);
    };
    this.#queued[worker.index] += offer.units;
    this.#queued[local] += offer.units;
    return firstServed([
      this.#pool!.offer(worker.index, request, { cell, slot: worker.index }).finally(settled(worker.index)),
      this.#local.offer(request, { cell, slot: local }).finally(settled(local)),
    ]);
  }

  /** Slot `k`'s queued work, less the offered requests another slot took. */
  #load(k: number): number {
    let load = this.#queued[k];
    for (const { cell, units, counted } of this.#offers) {
      const holder = claimHolder(cell);
      if (counted.has(k) && holder !== undefined && holder !== k) load -= units;
    }
    return load;
  }

  /** Sends `request` to every slot, in slot order; resolves with their replies. */
  broadcast(request: (k: number) => Req): Promise<Res[]> {
    return Promise.all(Array.from({ length: this.size }, (_, k) => this.call(k, request(k))));
  }

  /** Terminates the workers; the calling thread's slot serves what it was sent, then nothing more is sent. */
  async close(): Promise<void> {
    await this.#pool?.close();
  }
}
