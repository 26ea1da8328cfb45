// The dispatcher's early start of build-emulator's pool threads (src/cli/early_threads.ts).
import { describe, expect, test } from "vitest";
import { earlyCalibrationThreads } from "../../src/cli/early_threads.ts";

describe("earlyCalibrationThreads", () => {
  test.each([
    [["--model", "m", "--out", "o"]],
    [["--workers", "1", "--model", "m"]],
    [["--workers", "2", "--method", "layerdrop"]],
    [["--workers=2", "--queue", "redis://127.0.0.1:6379"]],
    [["--workers", "2", "--help"]],
    [["--workers", "two"]],
  ])("starts nothing for %j", (argv) => {
    expect(earlyCalibrationThreads(argv)).toBeUndefined();
  });

  test.each([
    [["--model", "m", "--workers", "3", "--calibration", "c"], 3],
    [["--workers=2", "--method", "gradot"], 2],
  ])("starts the n - 1 worker threads of %j", async (argv, size) => {
    const threads = earlyCalibrationThreads(argv);
    try {
      expect(threads?.size).toBe(size);
      expect((await threads!.workers).size).toBe(size - 1);
    } finally {
      await threads?.close();
    }
  });
});
