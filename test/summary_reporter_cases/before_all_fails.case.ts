// A case for test/summary_reporter.test.ts: a beforeAll that throws, which leaves both tests unrun.
import { beforeAll, expect, it } from "vitest";

beforeAll(() => {
  throw new Error("a system package is missing");
});
it("needs the package", () => expect(true).toBe(true));
it("needs it too", () => expect(true).toBe(true));
