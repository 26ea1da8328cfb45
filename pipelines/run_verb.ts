/**
 * Runs an `offtune` verb in a child process of the current runtime (Node +
 * tsx, or Deno), for pipelines that compose verbs (the demo, experiments,
 * benchmarks that need a fresh process for a clean peak RSS).
 *
 * A SIGINT or SIGTERM to the parent is passed on to every running child;
 * the parent waits until they have stopped (each cleans up or checkpoints,
 * docs/GUARANTEES.md "Interrupts"), starts no new one, and exits with the
 * signal's status (130, 143). A second signal exits at once.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Interrupted, signalExitCode, type StopSignal } from "../src/cli/interrupt.ts";

const SCRIPT = fileURLToPath(new URL("./offtune.ts", import.meta.url));

/** The children running now. */
const running = new Set<ChildProcess>();
/** The signal being passed on, once one arrived. */
let stopping: StopSignal | undefined;
let forwarding = false;

/** Exits once no child is left (at once when none runs). */
function exitWhenChildrenStop(signal: StopSignal): void {
  if (running.size === 0) process.exit(signalExitCode(signal));
}

/** Installs (once) the handlers that pass SIGINT/SIGTERM on to the children. */
function forwardSignals(): void {
  if (forwarding) return;
  forwarding = true;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(signalExitCode(signal));
      stopping = signal;
      for (const child of running) child.kill(signal);
      exitWhenChildrenStop(signal);
    });
  }
}

/**
 * Runs `offtune <args>`; its stdout (and stderr) go to `log` when given, else
 * are discarded (stderr inherited). Rejects with the verb's last words when it
 * exits non-zero, and with {@link Interrupted} once a signal is being passed on.
 */
export function runVerb(args: string[], log?: string): Promise<void> {
  if (stopping) return Promise.reject(new Interrupted(stopping));
  forwardSignals();
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
    running.add(child);
    child.on("error", (e) => {
      running.delete(child);
      reject(e);
    });
    child.on("exit", (code, signal) => {
      running.delete(child);
      if (stopping) {
        reject(new Interrupted(stopping));
        exitWhenChildrenStop(stopping);
      } else if (code === 0) resolve();
      else reject(new Error(`offtune ${args.join(" ")} exited with ${code ?? signal}${log ? ` (see ${log})` : ""}`));
    });
  }).finally(() => {
    if (fd !== undefined) closeSync(fd);
  });
}
