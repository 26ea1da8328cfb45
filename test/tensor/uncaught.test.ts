/**
 * An error that escapes after the wasm backend started prints its own
 * message and stack (src/tensor/backend.ts removes the listeners of the
 * backend's Emscripten glue, which rethrew it from inside the minified
 * bundle: ~39 KB of that bundle's source line, then exit code 7).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

it("prints an uncaught error's message and stack, not the backend's source, and exits 1", () => {
  const script = fileURLToPath(new URL("./uncaught_case.mts", import.meta.url));
  const run = spawnSync(process.execPath, ["--import", "tsx", script, "marker"], { encoding: "utf8" });
  expect(run.status).toBe(1);
  expect(run.stderr).toContain("Error: uncaught after the wasm backend started (marker)");
  expect(run.stderr).toContain("uncaught_case.mts");
  expect(run.stderr).not.toContain("WasmBackendModule");
  expect(run.stderr.length).toBeLessThan(2000);
}, 60_000);
