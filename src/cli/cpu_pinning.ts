/**
 * Running a child process on a given number of cores: Linux's `taskset`
 * (util-linux) sets the CPU affinity before the program starts, so every
 * thread it makes (V8's compiler and garbage collector threads, libuv's pool,
 * worker threads) inherits it. `bench gradot` measures "one core" and "two
 * cores" this way (docs/GRADOT.md "Benchmarks"): a one-thread build left
 * unpinned on a 2-core machine still runs V8's helper threads on the second
 * core.
 *
 * @module
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import process from "node:process";

/**
 * The CPUs this process may run on, from `Cpus_allowed_list` in
 * `/proc/self/status` ("0-3,8"), or undefined where there is no such file
 * (not Linux).
 */
export function allowedCpus(): number[] | undefined {
  let status: string;
  try {
    status = readFileSync("/proc/self/status", "utf8");
  } catch {
    return undefined;
  }
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (list === undefined) return undefined;
  const cpus: number[] = [];
  for (const range of list.split(",")) {
    const [first, last = first] = range.split("-").map(Number);
    for (let cpu = first; cpu <= last; cpu++) cpus.push(cpu);
  }
  return cpus;
}

/** The `taskset` executable on PATH, or undefined. */
function taskset(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, "taskset");
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** How to run a command on some cores: the CPUs and the command line that pins it to them. */
export interface CorePinning {
  /** The CPUs the command runs on. */
  cpus: number[];
  /** `[command, argv]` run under `taskset -c <cpus>`. */
  wrap(command: string, argv: string[]): [string, string[]];
}

/**
 * The first `count` of this process's CPUs and how to pin a child to them, or
 * why that cannot be done here (fewer CPUs, no `/proc`, no `taskset`).
 */
export function pinToCores(count: number): CorePinning | string {
  const cpus = allowedCpus();
  if (cpus === undefined) return "no /proc/self/status to read the CPUs from";
  if (cpus.length < count) return `this process may run on ${cpus.length} CPU${cpus.length === 1 ? "" : "s"}, fewer than ${count}`;
  const tool = taskset();
  if (tool === undefined) return "taskset (util-linux) is not on PATH";
  const chosen = cpus.slice(0, count);
  return { cpus: chosen, wrap: (command, argv) => [tool, ["-c", chosen.join(","), command, ...argv]] };
}
