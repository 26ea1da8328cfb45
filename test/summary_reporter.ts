/**
 * A vitest reporter that ends the run with the plain summary line CI reads:
 * `N passed, N failed` (`, N skipped` when any were skipped). It also writes
 * the counts to `$OFFTUNE_SUMMARY_FILE` when set, so `.ci/run` can add its
 * own smoke checks to them. Skipped tests are listed above that line, one
 * line per suite, so a skip is never silent: a suite that needs an optional
 * system package says which in its name (e.g. "needs Debian sword-text-kjv").
 */
import { writeFileSync } from "node:fs";

interface TestCaseLike {
  result(): { state: string };
  parent: { fullName?: string };
}
interface ModuleLike {
  relativeModuleId: string;
  children: { allTests(): Iterable<TestCaseLike> };
  state(): string;
}

export default class SummaryReporter {
  onTestRunEnd(modules: ReadonlyArray<ModuleLike>, errors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const skippedSuites = new Map<string, number>();
    for (const module of modules) {
      let failedTests = 0;
      const unrun: string[] = [];
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failedTests++;
        else unrun.push(test.parent.fullName ? `${module.relativeModuleId} > ${test.parent.fullName}` : module.relativeModuleId);
      }
      // A file that failed to load, or whose beforeAll threw (which leaves its
      // tests unrun, reported as skipped), counts as one failure, not as skips.
      if (failedTests === 0 && module.state() === "failed") {
        failed++;
        continue;
      }
      failed += failedTests;
      skipped += unrun.length;
      for (const suite of unrun) skippedSuites.set(suite, (skippedSuites.get(suite) ?? 0) + 1);
    }
    failed += errors.length;
    const counts = { passed, failed, skipped };
    if (process.env.OFFTUNE_SUMMARY_FILE) {
      writeFileSync(process.env.OFFTUNE_SUMMARY_FILE, JSON.stringify(counts));
    }
    for (const [suite, n] of skippedSuites) console.log(`skipped ${n}: ${suite}`);
    console.log(
      `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`,
    );
  }
}
