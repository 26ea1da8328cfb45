// A pool worker for worker_pool.test.ts: sums a Float32Array (moved, not
// copied), reports its thread id and OPENBLAS_NUM_THREADS, or fails on demand.
import process from "node:process";
import { threadId } from "node:worker_threads";
import { serveRequests } from "../../src/distributed/worker_pool.ts";

interface Request {
  values?: Float32Array;
  fail?: string;
  delayMs?: number;
}

serveRequests<Request, { sum: number; thread: number; blas?: string; echo: Float32Array }>(async (request) => {
  if (request.fail) throw new Error(request.fail);
  if (request.delayMs) await new Promise((r) => setTimeout(r, request.delayMs));
  const values = request.values ?? new Float32Array();
  let sum = 0;
  for (const v of values) sum += v;
  const echo = values.map((v) => v * 2);
  return {
    value: { sum, thread: threadId, blas: process.env.OPENBLAS_NUM_THREADS, echo },
    transfer: [echo.buffer],
  };
});
