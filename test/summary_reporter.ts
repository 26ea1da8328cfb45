/**
 * A vitest reporter that ends the run with the plain summary line CI reads:
 * `N passed, N failed` (`, N skipped` when any were skipped). It also writes
 * the counts to `$OFFTUNE_SUMMARY_FILE` when set, so `.ci/run` can add its
 * own smoke checks to them.
 */
import { writeFileSync } from "node:fs";

interface TestCaseLike {
  result(): { state: string };
}
interface ModuleLike {
  children: { allTests(): Iterable<TestCaseLike> };
  state(): string;
}

export default class SummaryReporter {
  onTestRunEnd(modules: ReadonlyArray<ModuleLike>, errors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of modules) {
      let tests = 0;
      for (const test of module.children.allTests()) {
        tests++;
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      // A file that failed to load has no tests but must count as a failure.
      if (tests === 0 && module.state() === "failed") failed++;
    }
    failed += errors.length;
    const counts = { passed, failed, skipped };
    if (process.env.OFFTUNE_SUMMARY_FILE) {
      writeFileSync(process.env.OFFTUNE_SUMMARY_FILE, JSON.stringify(counts));
    }
    console.log(
      `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`,
    );
  }
}
