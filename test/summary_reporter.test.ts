/**
 * The summary reporter (test/summary_reporter.ts) on the cases in
 * test/summary_reporter_cases/, run in a child vitest: a file that fails to
 * load and a file whose beforeAll throws each count as one failure (never as
 * skipped tests), and a skipped suite is listed with its reason.
 */
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

it("counts a file that fails to load or whose beforeAll throws as failed, and lists skipped suites", () => {
  const vitest = join(dirname(createRequire(import.meta.url).resolve("vitest/package.json")), "vitest.mjs");
  const run = spawnSync(process.execPath, [
    vitest, "run", "--config", "vitest.config.ts", "--reporter", join(ROOT, "test/summary_reporter.ts"),
  ], { cwd: join(ROOT, "test/summary_reporter_cases"), encoding: "utf8", env: { ...process.env, OFFTUNE_SUMMARY_FILE: "" } });
  const lines = run.stdout.trim().split("\n");
  expect(run.status, run.stderr).toBe(1);
  expect(lines.at(-1)).toBe("1 passed, 2 failed, 1 skipped");
  expect(lines).toContain(
    "skipped 1: passes.case.ts > needs something (skipped: needs Debian some-package)",
  );
}, 60_000);
