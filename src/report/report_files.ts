/**
 * The files of a report (docs/REPORT.md): report.md, report.json, one
 * `tasks-<label>.svg` per row, privacy.svg and frontier.svg, rendered as text and written
 * atomically into an output directory.
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { aggregateRuns, type Report } from "./aggregate.ts";
import { frontierSvg } from "./frontier.ts";
import { loadRuns } from "./load_runs.ts";
import { renderMarkdown } from "./markdown.ts";
import { privacyPlaneSvg } from "./privacy_plane.ts";
import { taskBarsSvg } from "./task_bars.ts";

/** File names of the fixed outputs. */
export const REPORT_MARKDOWN = "report.md";
export const REPORT_JSON = "report.json";
export const PRIVACY_PLOT = "privacy.svg";
export const FRONTIER_PLOT = "frontier.svg";

/** File name of a row's per-task bar chart (labels are already safe file names). */
export function taskBarsFile(label: string): string {
  return `tasks-${label}.svg`;
}

/** Renders every report file: file name → text, report.md first. */
export function renderReportFiles(report: Report, title: string): Map<string, string> {
  const metric = report.metric === "acc_norm" ? "acc_norm" : "accuracy";
  const files = new Map<string, string>([
    [REPORT_MARKDOWN, renderMarkdown(report, title)],
    [REPORT_JSON, JSON.stringify(report, null, 2) + "\n"],
  ]);
  for (const row of report.rows) files.set(taskBarsFile(row.label), taskBarsSvg(row, report.tasks, metric));
  files.set(PRIVACY_PLOT, privacyPlaneSvg(report.rows, report.tasks.length, metric));
  files.set(FRONTIER_PLOT, frontierSvg(report.rows, report.tasks.length, metric));
  return files;
}

/** Writes `files` (from {@link renderReportFiles}) into `outDir`, each atomically; returns their paths. */
export async function writeReportFiles(outDir: string, files: Map<string, string>): Promise<string[]> {
  const encoder = new TextEncoder();
  const paths: string[] = [];
  for (const [name, text] of files) {
    const path = join(outDir, name);
    await writeFileAtomic(path, encoder.encode(text));
    paths.push(path);
  }
  return paths;
}

/** What {@link writeReport} wrote. */
export interface WrittenReport {
  /** The aggregated table (what report.json holds). */
  report: Report;
  /** report.md's text. */
  markdown: string;
  /** The files written. */
  paths: string[];
}

/**
 * Builds the report of a runs directory (`<runs>/<label>/seed-<n>/result.json`,
 * docs/REPORT.md) and writes its files to `options.out` (default
 * `<runs>/_report`): what `offtune report` does, without printing.
 *
 * @param options.title the heading (default "Offsite-tuning report: <model>")
 * @param options.baseline the label every other row is compared with (default:
 *   the GradOT row at each row's ratio, src/report/compare.ts)
 */
export async function writeReport(
  runs: string,
  options: { out?: string; title?: string; baseline?: string } = {},
): Promise<WrittenReport> {
  const report = aggregateRuns(await loadRuns(runs), { baseline: options.baseline });
  const files = renderReportFiles(report, options.title ?? `Offsite-tuning report: ${report.model}`);
  const paths = await writeReportFiles(options.out ?? join(runs, "_report"), files);
  return { report, markdown: files.get(REPORT_MARKDOWN)!, paths };
}
