/**
 * `npm run demo` / `deno task demo` / `offtune demo`: the README's main job on
 * the shipped fixtures. Runs the offsite-tuning loop (`offtune experiment`)
 * for GradOT on fixtures/base on a subset sized for a 2-core machine (three
 * tasks, one seed, 200 training and 200 test items per task, two epochs at
 * lr 1e-3, no Full FT), then writes the report (`offtune report`): both
 * through mod.ts (`runExperiment`, `writeReport`). The full run (all 8
 * tasks, all items, 3 seeds, Full FT) is the same verb with its defaults.
 *
 * @module
 */
import { dirname } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { experimentOptions, runExperiment, writeReport } from "../mod.ts";

/** The demo's task subset: three tasks of different kinds. */
export const DEMO_TASKS = ["lastword_cloze", "kjv_verse_ending", "spam_detection"];

/** Help text for the verb. */
export const help = `offtune demo [--out <dir>] [--model <dir>] [--quiet]

The offsite-tuning loop on the shipped fixtures, sized to take minutes: GradOT
emulator of fixtures/base (ratio 0.5), adapters tuned on ${DEMO_TASKS.join(", ")}
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
    options: { out: { type: "string", default: "runs/demo" }, model: { type: "string", default: "fixtures/base" }, quiet: { type: "boolean", default: false } },
  });
  const started = performance.now();
  await runExperiment(await experimentOptions({
    model: values.model,
    runs: values.out,
    tasks: DEMO_TASKS,
    seeds: [0],
    trainLimit: 200,
    evalLimit: 200,
    epochs: 2,
    lr: 1e-3,
    sequences: 32,
    fullFt: false,
    quiet: values.quiet,
  }));
  const title = `offtune demo: GradOT on ${values.model} (subset: ${DEMO_TASKS.length} tasks, 200 items, 1 seed)`;
  const { markdown, paths } = await writeReport(values.out, { title });
  process.stdout.write(markdown);
  process.stderr.write(`offtune report: wrote ${paths.join(", ")}\n`);
  console.log(`\ndemo finished in ${((performance.now() - started) / 60000).toFixed(1)} min; report in ${dirname(paths[0])}`);
  return 0;
}
