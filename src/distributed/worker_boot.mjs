// Entry of every pool worker under Node (see worker_pool.ts): Node cannot
// import TypeScript by itself, and `execArgv: ["--import", "tsx"]` does not
// reach worker threads on Node 20, so the worker registers tsx's loader here
// (for TypeScript entries) and then imports the real entry module. Plain
// JavaScript on purpose.
import { workerData } from "node:worker_threads";

if (/\.[cm]?tsx?$/.test(workerData.entry)) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import(workerData.entry);
