/**
 * `npm run demo` / `deno task demo` / `offtune demo`: the README's main job on
 * the shipped fixtures. Runs the offsite-tuning loop (`offtune experiment`)
 * for GradOT on fixtures/small on a subset sized for a 2-core machine (three
 * tasks, one seed, 200 training and 200 test items per task, two epochs at
 * lr 1e-3, no Full FT), then writes the report (`offtune report`). The full run (all 8
 * tasks, all items, 3 seeds, Full FT) is the same verb with its defaults.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { main as report } from "./report.ts";
import { experimentOptions, runExperiment } from "./experiment.ts";

/** The demo's task subset: three tasks of different kinds. */
export const DEMO_TASKS = ["lastword_cloze", "kjv_verse_ending", "spam_detection"];

/** Help text for the verb. */
export const help = `offtune demo [--out <dir>] [--model <dir>] [--quiet]

The offsite-tuning loop on the shipped fixtures, sized to take minutes: GradOT
emulator of fixtures/small (ratio 0.5), adapters tuned on ${DEMO_TASKS.join(", ")}
(200 training items, 2 epochs at lr 1e-3, seed 0), evaluated on 200 test items each;
then the report (report.md, report.json, SVG plots) in <out>/_report.

  --out <dir>     runs directory (default runs/demo); it must not exist, be
                  empty, or be a runs directory (with _work)
  --model <dir>   original checkpoint (default fixtures/small)
  --quiet         no progress`;

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: "string", default: "runs/demo" }, model: { type: "string", default: "fixtures/small" }, quiet: { type: "boolean", default: false } },
  });
  const started = performance.now();
  const options = experimentOptions([
    "--model", values.model, "--runs", values.out, "--tasks", DEMO_TASKS.join(","), "--seeds", "0",
    "--train-limit", "200", "--eval-limit", "200", "--epochs", "2", "--lr", "1e-3", "--sequences", "32", "--no-full-ft",
    ...(values.quiet ? ["--quiet"] : []),
  ]);
  await runExperiment(options);
  await report(["--runs", values.out, "--title", `offtune demo: GradOT on ${values.model} (subset: ${DEMO_TASKS.length} tasks, 200 items, 1 seed)`]);
  console.log(`\ndemo finished in ${((performance.now() - started) / 60000).toFixed(1)} min; report in ${join(values.out, "_report")}`);
  return 0;
}
