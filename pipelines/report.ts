/**
 * `offtune report --runs <dir>`: the seeds' table (docs/METHOD.md §1, §5) from a
 * directory of run results (`<runs>/<label>/seed-<n>/result.json`,
 * docs/REPORT.md), as Markdown (also printed), report.json and SVG charts
 * (`writeReport` of mod.ts).
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { writeReport } from "../mod.ts";

/** Help text for the verb. */
export const help = `offtune report --runs <dir> [--out <dir>] [--title <text>] [--baseline <label>]

Builds the offsite-tuning table (ratio, Full ZS, Emulator ZS, Full FT,
Emulator FT, Plug-in, Δ = Plug-in − Emulator FT, emulator size, build
seconds; per task and averaged; plus perplexities) from
<runs>/<label>/seed-<n>/result.json, as mean ± sample std over seeds; then
each row's claims against the full model (Plug-in − Full FT, Emu ZS − Full
ZS) and each row against a reference row (Plug-in, Δ, Emu ZS), as mean
differences with paired Student t 95% intervals. The layout, the
result.json format and the intervals are in docs/REPORT.md.

Writes report.md (also printed to stdout), report.json, tasks-<label>.svg
(per-task bars of each row), privacy.svg (Δ vs plug-in accuracy) and
frontier.svg (plug-in accuracy against emulator ZS accuracy and emulator
perplexity, one line per method through its ratios).

  --runs <dir>        the runs directory (required)
  --out <dir>         where to write (default <runs>/_report)
  --title <text>      the report's heading (default "Offsite-tuning report: <model>")
  --baseline <label>  the row every other row is compared with (default: the
                      GradOT row at the same ratio, where there is one)`;

/** CLI entry: `offtune report --runs <dir> [--out <dir>] [--title <text>] [--baseline <label>]`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      out: { type: "string" },
      title: { type: "string" },
      baseline: { type: "string" },
    },
    strict: true,
  });
  if (!values.runs) throw new Error("--runs is required (see offtune report --help)");
  const { markdown, paths } = await writeReport(values.runs, { out: values.out, title: values.title, baseline: values.baseline });
  process.stdout.write(markdown);
  process.stderr.write(`offtune report: wrote ${paths.join(", ")}\n`);
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("report.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
