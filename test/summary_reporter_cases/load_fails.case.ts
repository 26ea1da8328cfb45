// A case for test/summary_reporter.test.ts: a file that fails to load (no tests are collected).
import { it } from "vitest";

throw new Error("this file cannot load");
it("never collected", () => {});
