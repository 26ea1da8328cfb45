// A pool worker for worker_pool.test.ts: sums a Float32Array (moved, not
// copied), reports its thread id, OPENBLAS_NUM_THREADS as the C library
// sees it (getenv, what OpenBLAS reads) and how many requests it served up
// to this one, or fails on demand. Requests marked `first` are served ahead.
import { createRequire } from "node:module";
import { threadId } from "node:worker_threads";
import { serveRequests } from "../../src/distributed/worker_pool.ts";

interface Request {
  values?: Float32Array;
  fail?: string;
  delayMs?: number;
  first?: boolean;
}

let served = 0;

/** getenv(3) through koffi: the process's C environment, not this worker's `process.env` copy. */
function cGetenv(name: string): string | undefined {
  const koffi = createRequire(import.meta.url)("koffi");
  return koffi.load("libc.so.6").func("const char* getenv(const char*)")(name) ?? undefined;
}

serveRequests<Request, { sum: number; thread: number; blas?: string; echo: Float32Array; served: number }>(async (request) => {
  served += 1;
  if (request.fail) throw new Error(request.fail);
  if (request.delayMs) await new Promise((r) => setTimeout(r, request.delayMs));
  const values = request.values ?? new Float32Array();
  let sum = 0;
  for (const v of values) sum += v;
  const echo = values.map((v) => v * 2);
  return {
    value: { sum, thread: threadId, blas: cGetenv("OPENBLAS_NUM_THREADS"), echo, served },
    transfer: [echo.buffer],
  };
}, (request) => request.first === true);
