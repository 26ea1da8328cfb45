// Run by test/tensor/uncaught.test.ts: starts the wasm backend, then lets an error escape.
import { initBackend } from "../../src/tensor/backend.ts";

await initBackend("wasm", true);
setTimeout(() => {
  throw new Error(`uncaught after the wasm backend started (${process.argv[2]})`);
}, 1);
