/**
 * Runs an `offtune` verb in a child process of the current runtime (Node +
 * tsx, or Deno), for pipelines that compose verbs (the demo, experiments,
 * benchmarks that need a fresh process for a clean peak RSS).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Buffer } from "node:buffer";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("./offtune.ts", import.meta.url));

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

/** The verbs' child processes still running. */
const children = new Set<ChildProcess>();

/** Signals passed on to the children: a stopped parent never leaves them running. */
const FORWARDED = { SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * Passes `signal` on to every running child and exits with the signal's
 * status. SIGINT is not handled: Ctrl-C reaches the children from the
 * terminal already (one process group), and a second one would stop a tuning
 * child before its checkpoint (pipelines/tune.ts).
 */
function stopChildren(signal: keyof typeof FORWARDED): void {
  for (const child of children) child.kill(signal);
  process.exit(FORWARDED[signal]);
}

/** Installs {@link stopChildren} while children run (the first spawn), and removes it after the last exits. */
function track(child: ChildProcess): void {
  if (children.size === 0) for (const signal of Object.keys(FORWARDED)) process.on(signal, stopChildren);
  children.add(child);
  child.once("exit", () => {
    children.delete(child);
    if (children.size === 0) for (const signal of Object.keys(FORWARDED)) process.off(signal, stopChildren);
  });
}

/**
 * Runs `offtune <args>`; its stdout (and stderr) go to `log` when given, else
 * are discarded (stderr inherited). Rejects, when it exits non-zero, with the
 * error it printed in the log ({@link lastErrorLine}) and the log's path.
 * While it runs, SIGTERM or SIGHUP to this process is passed on to it
 * ({@link stopChildren}).
 */
export function runVerb(args: string[], log?: string): Promise<void> {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  const [command, argv] = deno
    ? [deno.execPath(), ["run", "-A", SCRIPT, ...args]]
    : [process.execPath, [...nodeFlags(), SCRIPT, ...args]];
  const fd = log ? openSync(log, "a") : undefined;
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, argv, {
      stdio: ["ignore", fd ?? "ignore", fd ?? "inherit"],
      env: { ...process.env, OFFTUNE_QUIET: "1" },
    });
    track(child);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
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
