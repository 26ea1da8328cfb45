// The `offtune` CLI as a child process, for the tests that signal or kill it
// (test/pipelines/kill_resume.test.ts, interrupts.test.ts).
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** A running `offtune` process. */
export interface CliProcess {
  child: ChildProcess;
  /** Resolves once the verb has started its tensor backend (its work begins). */
  started: Promise<void>;
  /** Resolves with the exit status (or the signal that ended it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything written to stderr so far. */
  stderr(): string;
}

/**
 * Spawns `offtune <args>` with this process's runtime and environment
 * (OFFTUNE_QUIET unset: the "tensor backend" line marks the start of work).
 */
export function spawnCli(args: string[]): CliProcess {
  const env = { ...process.env };
  delete env.OFFTUNE_QUIET;
  const child = spawn(process.execPath, ["--import", "tsx", "pipelines/offtune.ts", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env,
  });
  let stderr = "";
  let markStarted: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.includes("tensor backend")) markStarted();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      markStarted();
      resolve({ code, signal });
    })
  );
  return { child, started, exited, stderr: () => stderr };
}

/** Whether process `pid` exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
