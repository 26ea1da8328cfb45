/**
 * runVerb (src/cli/run_verb.ts): a composed verb stopped by SIGTERM (a job
 * scheduler, `kill`) stops its child verbs too instead of leaving them
 * running.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The live (not zombie) child verb processes of `pid` (running offtune.ts),
 * from /proc. tsx may also start its esbuild service as a child (on a cold
 * cache, as in a fresh clone): that one is not a verb.
 */
function childVerbsOf(pid: number): number[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const verb = readFileSync(`/proc/${d}/cmdline`, "utf8").includes("offtune.ts");
      return Number(ppid) === pid && state !== "Z" && verb ? [Number(d)] : [];
    } catch {
      return []; // exited while listed
    }
  });
}

const alive = (pid: number) => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].startsWith("Z");
  } catch {
    return false;
  }
};

it.skipIf(!existsSync("/proc/self/stat"))("SIGTERM to the parent stops the child verb it runs (needs Linux /proc)", async () => {
  const script = fileURLToPath(new URL("./run_verb_case.mts", import.meta.url));
  const small = fileURLToPath(new URL("../../fixtures/small", import.meta.url));
  // A verb that runs for minutes: every fixture task on fixtures/small.
  const parent = spawn(process.execPath, ["--import", "tsx", script, "eval", "--model", small, "--quiet"], { stdio: "ignore" });
  const exited = new Promise<number | null>((resolve) => parent.once("exit", (code) => resolve(code)));
  let children: number[] = [];
  for (let i = 0; i < 300 && children.length === 0; i++) {
    await sleep(100);
    children = childVerbsOf(parent.pid!);
  }
  try {
    expect(children.length).toBe(1);
    await sleep(500); // the parent is waiting on it
    parent.kill("SIGTERM");
    expect(await exited).toBe(143);
    for (let i = 0; i < 100 && alive(children[0]); i++) await sleep(100);
    expect(alive(children[0])).toBe(false);
  } finally {
    for (const pid of children) if (alive(pid)) process.kill(pid, "SIGKILL"); // never leave one behind
    parent.kill("SIGKILL");
  }
}, 60_000);
