import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { lapackAvailable } from "../../src/linalg/gemm.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = `${root}node_modules/.bin/deno`;
const skip = !lapackAvailable() ? "needs Debian liblapacke and libopenblas0" : !existsSync(deno) ? `no ${deno}` : "";

describe.skipIf(skip !== "")(`linalg under Deno${skip ? ` (skipped: ${skip})` : ""}`, () => {
  test("the Deno.dlopen path decomposes and multiplies correctly, and reads the kernel OPENBLAS_CORETYPE forces", () => {
    const run = spawnSync(deno, ["run", "-A", "test/linalg/deno_smoke.ts"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, OPENBLAS_CORETYPE: "Prescott" },
      timeout: 60_000,
    });
    console.log(run.stdout.trim(), run.stderr.trim());
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("deno linalg smoke ok via Deno.dlopen");
    expect(run.stdout).toContain("OpenBLAS kernel Prescott");
  });
});
