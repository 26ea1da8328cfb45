/**
 * A pool slot in the calling thread (docs/DISTRIBUTED.md "How a GradOT build
 * uses the cores"): requests are served by the same handler a worker thread
 * runs, one at a time in the order they came (but those the pool serves
 * first: `serialServer`), each after two turns of the event loop, so replies
 * from the worker threads, file work and the calling thread's own steps go
 * before them. One turn was not enough: a GradOT build's backward yields a
 * turn at each block (`checkpointBoundary`), and this slot's next request,
 * scheduled in the same turn, ran first, so the next block's chunks reached
 * the worker threads a compression later while they idled ({@link LOCAL_TURNS}).
 * Nothing is copied: a request's arrays are handed over as they are.
 *
 * @module
 */
import type { Reply } from "./worker_pool.ts";
import { serialServer } from "./serial_server.ts";
import { type ClaimTicket, takeClaim } from "./claim.ts";

/** A request waiting in this slot: with a ticket when it was offered to another slot too. */
interface Waiting<Req, Res> {
  request: Req;
  claim?: ClaimTicket;
  resolve: (value: Res | undefined) => void;
  reject: (error: unknown) => void;
}

/**
 * Turns of the event loop this thread's slot lets pass before each request:
 * the calling thread's steps that yield one turn resume first (a 2-slot
 * OPT-125M GradOT build, four interleaved runs each: 14.69 s mean against
 * 15.01 s with one turn, and 14.68 s with three; docs/DISTRIBUTED.md "Where
 * 2 slots wait").
 */
export const LOCAL_TURNS = 2;

/** Serves requests in this thread, one at a time. */
export class LocalSlot<Req, Res> {
  readonly #serve: (item: Waiting<Req, Res>) => void;

  /**
   * A slot serving requests with `handler` (a worker's `serveRequests`
   * handler), those `first` holds for ahead of the others waiting, as the
   * pool's workers serve them.
   */
  constructor(handler: (request: Req) => Reply<Res> | Promise<Reply<Res>>, first?: (request: Req) => boolean) {
    this.#serve = serialServer<Waiting<Req, Res>>(async ({ request, claim, resolve, reject }) => {
      if (claim && !takeClaim(claim)) return resolve(undefined);
      try {
        resolve((await handler(request)).value);
      } catch (e) {
        reject(e);
      }
    }, first && (({ request }) => first(request)), LOCAL_TURNS);
  }

  /** Serves `request` once those before it (and any served first) are served; resolves with the reply's value. */
  call(request: Req): Promise<Res> {
    return new Promise<Res | undefined>((resolve, reject) => this.#serve({ request, resolve, reject })) as Promise<Res>;
  }

  /**
   * Like {@link call}, but serves `request` only if this slot takes the
   * claim `ticket` is for when its turn comes; resolves with undefined when
   * another slot had taken it (`SlotPool.offer`).
   */
  offer(request: Req, ticket: ClaimTicket): Promise<Res | undefined> {
    return new Promise<Res | undefined>((resolve, reject) => this.#serve({ request, claim: ticket, resolve, reject }));
  }
}
