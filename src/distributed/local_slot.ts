/**
 * A pool slot in the calling thread (docs/DISTRIBUTED.md "How a GradOT build
 * uses the cores"): requests are served by the same handler a worker thread
 * runs, one at a time in the order they came, each after a turn of the event
 * loop, so replies from the worker threads and file work interleave with
 * them. Nothing is copied: a request's arrays are handed over as they are.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { Reply } from "./worker_pool.ts";

/** Serves requests in this thread, one at a time. */
export class LocalSlot<Req, Res> {
  readonly #handler: (request: Req) => Reply<Res> | Promise<Reply<Res>>;
  #chain: Promise<unknown> = Promise.resolve();

  /** A slot serving requests with `handler` (a worker's `serveRequests` handler). */
  constructor(handler: (request: Req) => Reply<Res> | Promise<Reply<Res>>) {
    this.#handler = handler;
  }

  /** Serves `request` once those before it are served; resolves with the reply's value. */
  call(request: Req): Promise<Res> {
    const reply = this.#chain
      .then(() => new Promise<void>((turn) => setImmediate(turn)))
      .then(() => this.#handler(request))
      .then((r) => r.value);
    this.#chain = reply.catch(() => {});
    return reply;
  }
}
