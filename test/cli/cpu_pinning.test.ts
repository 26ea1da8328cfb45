import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { allowedCpus, pinToCores } from "../../src/cli/cpu_pinning.ts";

const linux = process.platform === "linux";

/** The `Cpus_allowed_list` a command run as `[command, argv]` reads for itself. */
function childCpus(command: string, argv: string[]): string {
  const status = execFileSync(command, argv, { encoding: "utf8" });
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)![1];
}

describe.runIf(linux)("cpu pinning", () => {
  it("reads as many allowed CPUs as the runtime counts", () => {
    const cpus = allowedCpus()!;
    expect(cpus.length).toBe(availableParallelism());
    expect(new Set(cpus).size).toBe(cpus.length);
  });

  it("runs a child on the first CPU only, from its start", () => {
    const one = pinToCores(1);
    if (typeof one === "string") throw new Error(one);
    expect(one.cpus).toEqual([allowedCpus()![0]]);
    const [command, argv] = one.wrap("cat", ["/proc/self/status"]);
    expect(childCpus(command, argv)).toBe(String(one.cpus[0]));
  });

  it("says why it cannot pin to more CPUs than the process has", () => {
    const reason = pinToCores(availableParallelism() + 1);
    expect(reason).toMatch(new RegExp(`may run on ${availableParallelism()} CPUs?, fewer than ${availableParallelism() + 1}`));
  });
});
