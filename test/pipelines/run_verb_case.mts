// Run by test/pipelines/run_verb.test.ts: runs one verb through runVerb, as experiment does.
import { runVerb } from "../../src/cli/run_verb.ts";

await runVerb(process.argv.slice(2));
