// A case for test/summary_reporter.test.ts: one test that passes, one skipped with its reason in the name.
import { describe, expect, it } from "vitest";

it("passes", () => expect(1 + 1).toBe(2));
describe.skipIf(true)("needs something (skipped: needs Debian some-package)", () => {
  it("would run with the package", () => expect(true).toBe(true));
});
