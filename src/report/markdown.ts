/**
 * Renders a {@link Report} as report.md (docs/REPORT.md): plain Markdown whose
 * tables are padded to aligned columns, so the same text reads well in a
 * terminal and renders as tables on a Markdown viewer.
 *
 * @module
 */
import type { DifferenceInterval } from "../eval/stats.ts";
import { ACCURACY_HEADINGS, type AccuracyKey, type Accuracies, type AccuracySpreads, type Report } from "./aggregate.ts";
import { CONFIDENCE } from "./compare.ts";

/** Shown where no run measured a value. */
const MISSING = "–";

/** `mean ± std` with `digits` decimals; the mean alone when `std` is null; `–` when `mean` is null. */
export function formatSpread(mean: number | null, std: number | null, digits = 2): string {
  if (mean === null) return MISSING;
  return std === null ? mean.toFixed(digits) : `${mean.toFixed(digits)} ± ${std.toFixed(digits)}`;
}

/**
 * A signed mean difference with its interval, `+1.25 [+0.49, +2.01]`; the
 * mean alone (and the pair count) when one pair gave no interval; `–` for null.
 */
export function formatInterval(d: DifferenceInterval | null, digits = 2): string {
  if (d === null) return MISSING;
  const signed = (v: number) => `${v > 0 ? "+" : v < 0 ? "−" : ""}${Math.abs(v).toFixed(digits)}`;
  return d.lo === null || d.hi === null ? `${signed(d.mean)} (n = ${d.n})` : `${signed(d.mean)} [${signed(d.lo)}, ${signed(d.hi)}]`;
}

/** Display width of a cell (code points, so "Δ" and "±" count one). */
const width = (text: string) => [...text].length;

/**
 * A Markdown table padded to aligned columns; the first column is
 * left-aligned, the others (numbers) right-aligned.
 */
export function markdownTable(headings: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headings.map((h, j) => Math.max(3, width(h), ...rows.map((r) => width(r[j]))));
  const pad = (cell: string, j: number) =>
    j === 0 ? cell + " ".repeat(widths[j] - width(cell)) : " ".repeat(widths[j] - width(cell)) + cell;
  const line = (cells: readonly string[]) => `| ${cells.map(pad).join(" | ")} |`;
  const rule = `|${widths.map((w, j) => (j === 0 ? ":" + "-".repeat(w + 1) : "-".repeat(w + 1) + ":")).join("|")}|`;
  return [line(headings), rule, ...rows.map(line)].join("\n");
}

const accuracyCells = (a: Accuracies, std: AccuracySpreads) =>
  (Object.keys(ACCURACY_HEADINGS) as AccuracyKey[]).map((k) => formatSpread(a[k], std[k]));

/** The comparisons and claims sections of report.md (docs/REPORT.md "Comparisons"). */
function intervalSections(report: Report): string[] {
  const percent = Math.round(100 * CONFIDENCE);
  const out = [
    "",
    `## The rows' claims (${percent}% intervals)`,
    "",
    "Against the full model: Plug-in − Full FT paired by (task, seed), Emu ZS − Full ZS paired by task; " +
      `mean difference [Student t ${percent}% interval], in points.`,
    "",
    markdownTable(
      ["Method", "Plug-in − Full FT", "Emu ZS − Full ZS"],
      report.rows.map((r) => [r.label, formatInterval(r.claims.plug_in_vs_full_ft), formatInterval(r.claims.emulator_zs_vs_full_zs)]),
    ),
    "",
    `## Comparisons (${percent}% intervals)`,
    "",
  ];
  if (report.comparisons.length === 0) {
    out.push("No row has a reference: no GradOT row at its ratio (`offtune report --baseline <label>` picks one).");
    return out;
  }
  out.push(
    "Each row − its reference row (the GradOT row at the same ratio unless `--baseline` names one): Plug-in and " +
      "Δ paired by (task, seed) over the seeds both ran, Emu ZS paired by task; " +
      `mean difference [Student t ${percent}% interval], in points. Positive: the row is higher.`,
    "",
    markdownTable(
      ["Method", "Reference", "Pairs", "Plug-in", "Δ", "Emu ZS"],
      report.comparisons.map((c) => [
        c.label,
        c.reference,
        c.plug_in === null ? "0" : String(c.plug_in.n),
        formatInterval(c.plug_in),
        formatInterval(c.delta),
        formatInterval(c.emulator_zs),
      ]),
    ),
  );
  return out;
}

/** Renders report.md; `title` is its first heading. */
export function renderMarkdown(report: Report, title: string): string {
  const { rows, tasks } = report;
  const metric = report.metric === "acc_norm" ? "length-normalised accuracy (acc_norm)" : "accuracy (acc)";
  const headings = ["Method", ...Object.values(ACCURACY_HEADINGS)];
  const out: string[] = [
    `# ${title}`,
    "",
    `Model \`${report.model}\`; ${metric} in %, ${tasks.length} task${tasks.length === 1 ? "" : "s"}: ` +
    `${tasks.join(", ")}.`,
    "Cells are mean ± sample std over seeds (Seeds = how many); Δ = Plug-in − Emu FT; Emu size = emulator middle " +
    `parameters as % of the original middle; ${MISSING} = not measured.`,
    "",
    `## Average over ${tasks.length} task${tasks.length === 1 ? "" : "s"}`,
    "",
    markdownTable(
      ["Method", "Ratio", ...headings.slice(1), "Emu size", "Build s", "Seeds"],
      rows.map((r) => [
        r.label,
        r.ratio === null ? MISSING : String(r.ratio),
        ...accuracyCells(r, r.std),
        `${r.emulator_ratio.toFixed(1)}%`,
        r.emulator_build_s === null ? MISSING : r.emulator_build_s.toFixed(1),
        String(r.seeds),
      ]),
    ),
  ];
  const chances = tasks.map((t) => report.chance[t]);
  if (chances.every((c) => c !== null)) {
    const mean = (chances as number[]).reduce((a, b) => a + b, 0) / chances.length;
    out.push(
      "",
      `Chance (answering at random) averages ${mean.toFixed(2)}% over the tasks; each task's is in its heading. ` +
        "An accuracy near it means the model does not solve the task.",
    );
  }
  out.push(...intervalSections(report));
  for (const task of tasks) {
    const counts = [...new Set(rows.map((r) => r.per_task[task].n))];
    const chance = report.chance[task] === null ? "" : `, chance ${report.chance[task]!.toFixed(2)}%`;
    out.push(
      "",
      `## ${task} (${counts.length === 1 ? `${counts[0]} examples` : `${counts.join(" / ")} examples`}${chance})`,
      "",
      markdownTable(headings, rows.map((r) => [r.label, ...accuracyCells(r.per_task[task], r.per_task[task].std)])),
    );
  }
  out.push(
    "",
    "## Perplexity (held-out text)",
    "",
    "Perplexity of general held-out text, not of a task: Full is the original model, Emulator the emulator " +
      "package with its untuned adapter (high when the emulator is a poor model on its own), and Plug-in the " +
      "original model with the adapter tuned on the first task of `experiment --tasks` plugged in. Plug-in near Full means tuning " +
      "for the task kept the model's general language modelling; far above it, the adapter traded it away.",
    "",
    markdownTable(
      ["Method", "Full", "Emulator", "Plug-in"],
      rows.map((r) => [
        r.label,
        formatSpread(r.ppl.full, r.std.ppl.full),
        formatSpread(r.ppl.emulator, r.std.ppl.emulator),
        formatSpread(r.ppl.plug_in, r.std.ppl.plug_in),
      ]),
    ),
    "",
    "## Settings",
    "",
    ...rows.map((r) =>
      `- \`${r.label}\`: method \`${r.method}\`, seeds ${r.seed_ids.join(", ")}, ` +
      `emulator ${r.emulator_params} / middle ${r.middle_params} parameters, settings \`${JSON.stringify(r.settings)}\``
    ),
    "",
  );
  return out.join("\n");
}
