// The child run of test/summary_reporter.test.ts: only this folder's cases (which the main run,
// reading *.test.ts files, never collects).
export default { test: { include: ["*.case.ts"] } };
