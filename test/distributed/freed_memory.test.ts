/**
 * `keepFreedMemory` sets glibc's trim and mmap thresholds through the FFI
 * (src/distributed/freed_memory.ts): on this project's Linux machines, glibc
 * takes every setting.
 */
import { describe, expect, test } from "vitest";
import { keepFreedMemory } from "../../src/distributed/freed_memory.ts";

describe("keepFreedMemory", () => {
  test.runIf(process.platform === "linux" && process.report.getReport().header.glibcVersionRuntime !== undefined)(
    "glibc takes every setting, once for the process",
    () => {
      expect(keepFreedMemory()).toBe(true);
      expect(keepFreedMemory()).toBe(true);
    },
  );
});
