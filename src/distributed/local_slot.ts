/**
 * A pool slot in the calling thread (docs/DISTRIBUTED.md "How a GradOT build
 * uses the cores"): requests are served by the same handler a worker thread
 * runs, one at a time in the order they came (but those the pool serves
 * first: `serialServer`), each after a turn of the event loop, so replies
 * from the worker threads and file work interleave with them. Nothing is
 * copied: a request's arrays are handed over as they are.
 *
 * @module
 */
import type { Reply } from "./worker_pool.ts";
import { serialServer } from "./serial_server.ts";

/** Serves requests in this thread, one at a time. */
export class LocalSlot<Req, Res> {
  readonly #serve: (item: { request: Req; resolve: (value: Res) => void; reject: (error: unknown) => void }) => void;

  /**
   * A slot serving requests with `handler` (a worker's `serveRequests`
   * handler), those `first` holds for ahead of the others waiting, as the
   * pool's workers serve them.
   */
  constructor(handler: (request: Req) => Reply<Res> | Promise<Reply<Res>>, first?: (request: Req) => boolean) {
    this.#serve = serialServer(async ({ request, resolve, reject }) => {
      try {
        resolve((await handler(request)).value);
      } catch (e) {
        reject(e);
      }
    }, first && (({ request }) => first(request)));
  }

  /** Serves `request` once those before it (and any served first) are served; resolves with the reply's value. */
  call(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => this.#serve({ request, resolve, reject }));
  }
}
