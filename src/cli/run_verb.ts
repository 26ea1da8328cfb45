/**
 * Runs an `offtune` verb in a child process of the current runtime (Node +
 * tsx, or Deno), for pipelines that compose verbs (the demo, experiments,
 * benchmarks that need a fresh process for a clean peak RSS).
 *
 * @module
 */
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../pipelines/offtune.ts", import.meta.url));

/**
 * Runs `offtune <args>`; its stdout (and stderr) go to `log` when given, else
 * are discarded (stderr inherited). Rejects with the verb's last words when it
 * exits non-zero.
 */
export function runVerb(args: string[], log?: string): Promise<void> {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  const [command, argv] = deno
    ? [deno.execPath(), ["run", "-A", SCRIPT, ...args]]
    : [process.execPath, [...process.execArgv, SCRIPT, ...args]];
  const fd = log ? openSync(log, "a") : undefined;
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, argv, {
      stdio: ["ignore", fd ?? "ignore", fd ?? "inherit"],
      env: { ...process.env, OFFTUNE_QUIET: "1" },
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`offtune ${args.join(" ")} exited with ${code}${log ? ` (see ${log})` : ""}`));
    });
  }).finally(() => {
    if (fd !== undefined) closeSync(fd);
  });
}
