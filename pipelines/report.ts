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
export const help = `offtune report --runs <dir> [--out <dir>] [--title <text>]

Builds the offsite-tuning table (Full ZS, Emulator ZS, Full FT, Emulator FT,
Plug-in, Δ = Plug-in − Emulator FT, emulator size; per task and averaged; plus
perplexities) from <runs>/<label>/seed-<n>/result.json, as mean ± sample std
over seeds. The layout and the result.json format are in docs/REPORT.md.

Writes report.md (also printed to stdout), report.json, tasks-<label>.svg
(per-task bars of each row) and privacy.svg (Δ vs plug-in accuracy).

  --runs <dir>     the runs directory (required)
  --out <dir>      where to write (default <runs>/_report)
  --title <text>   the report's heading (default "Offsite-tuning report: <model>")`;

/** CLI entry: `offtune report --runs <dir> [--out <dir>] [--title <text>]`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      out: { type: "string" },
      title: { type: "string" },
    },
    strict: true,
  });
  if (!values.runs) throw new Error("--runs is required (see offtune report --help)");
  const { markdown, paths } = await writeReport(values.runs, { out: values.out, title: values.title });
  process.stdout.write(markdown);
  process.stderr.write(`offtune report: wrote ${paths.join(", ")}\n`);
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("report.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
