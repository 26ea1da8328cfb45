/**
 * `offtune report --runs <dir>`: the seeds' table (docs/METHOD.md §1, §5) from a
 * directory of run results (`<runs>/<label>/seed-<n>/result.json`,
 * docs/REPORT.md), as Markdown (also printed), report.json and SVG charts.
 *
 * @module
 */
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { aggregateRuns } from "../src/report/aggregate.ts";
import { loadRuns } from "../src/report/load_runs.ts";
import { renderReportFiles, REPORT_MARKDOWN, writeReportFiles } from "../src/report/report_files.ts";

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
  const report = aggregateRuns(await loadRuns(values.runs));
  const title = values.title ?? `Offsite-tuning report: ${report.model}`;
  const files = renderReportFiles(report, title);
  const paths = await writeReportFiles(values.out ?? join(values.runs, "_report"), files);
  process.stdout.write(files.get(REPORT_MARKDOWN)!);
  process.stderr.write(`offtune report: wrote ${paths.join(", ")}\n`);
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("report.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
