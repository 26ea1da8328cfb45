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
import { Buffer } from "node:buffer";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { CorePinning } from "./cpu_pinning.ts";
import { Interrupted, signalExitCode, type StopSignal } from "./interrupt.ts";

const SCRIPT = fileURLToPath(new URL("../../pipelines/offtune.ts", import.meta.url));

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
 * Node's flags for a child verb: the parent's, plus tsx's loader when the
 * parent runs without it (a script or test runner that loads TypeScript its
 * own way), so the child can load pipelines/offtune.ts.
 */
function nodeFlags(): string[] {
  const flags = [...process.execArgv];
  if (!flags.some((flag) => flag.includes("tsx"))) flags.push("--import", "tsx");
  return flags;
}

/**
 * Runs `offtune <args>`; its stdout (and stderr) go to `log` when given, else
 * are discarded (stderr inherited). Rejects, when it exits non-zero, with the
 * error it printed in the log ({@link lastErrorLine}) and the log's path, and
 * with {@link Interrupted} once a signal is being passed on. `env` adds to
 * (or overrides) this process's environment for the child; `cores` runs it
 * pinned to those cores (`pinToCores`).
 */
export function runVerb(args: string[], log?: string, env: Record<string, string> = {}, cores?: CorePinning): Promise<void> {
  if (stopping) return Promise.reject(new Interrupted(stopping));
  forwardSignals();
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  const [runtime, runtimeArgv]: [string, string[]] = deno
    ? [deno.execPath(), ["run", "-A", SCRIPT, ...args]]
    : [process.execPath, [...nodeFlags(), SCRIPT, ...args]];
  const [command, argv] = cores ? cores.wrap(runtime, runtimeArgv) : [runtime, runtimeArgv];
  const fd = log ? openSync(log, "a") : undefined;
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, argv, {
      stdio: ["ignore", fd ?? "ignore", fd ?? "inherit"],
      env: { ...process.env, ...env, OFFTUNE_QUIET: "1" },
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
        return;
      }
      if (code === 0) return resolve();
      const status = code === null ? `was killed by ${signal}` : `exited with ${code}`;
      const said = log ? lastErrorLine(log) : undefined;
      reject(new Error(`offtune ${args.join(" ")} ${status}${said ? `: ${said}` : ""}${log ? ` (log: ${log})` : ""}`));
    });
  }).finally(() => {
    if (fd !== undefined) closeSync(fd);
  });
}

/** Bytes of a log's end read for its error line. */
const LOG_TAIL_BYTES = 64 * 1024;

/**
 * The error a failed verb printed in `log`: its last `offtune <verb>: …` line
 * (the form pipelines/offtune.ts prints errors in, uncaught ones too), else
 * its last line naming an error, else its last non-empty line.
 */
export function lastErrorLine(log: string): string | undefined {
  let text: string;
  try {
    const fd = openSync(log, "r");
    try {
      const size = fstatSync(fd).size;
      const start = Math.max(0, size - LOG_TAIL_BYTES);
      const bytes = Buffer.alloc(size - start);
      readSync(fd, bytes, 0, bytes.length, start);
      text = bytes.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const last = (test: (line: string) => boolean) => lines.findLast(test);
  return last((l) => /^offtune [\w-]*:/.test(l)) ?? last((l) => /\b\w*Error\b/.test(l)) ?? lines.at(-1);
}
