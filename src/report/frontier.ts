/**
 * The privacy–utility frontier (docs/REPORT.md, frontier.svg): how much
 * plug-in accuracy (utility, y) each method buys at each emulator strength
 * (x: what the emulator hands the data owner, lower is more private). Two
 * panels share the y axis: x = Emulator ZS accuracy, and x = emulator
 * perplexity (docs/METHOD.md §5). One line per method through its ratios,
 * each point labelled with its ratio; Full ZS and Full FT are horizontal
 * reference lines, the full model's own ZS accuracy and perplexity a vertical
 * one.
 *
 * A method's line is the rows whose labels differ only in a `-r<ratio>`
 * ending (`gradot-r0.3`, `gradot-r0.5`: line `gradot`), so whatever labels
 * the runs hold form the lines; a label without that ending is a line of one
 * point.
 *
 * @module
 */
import type { ReportRow } from "./aggregate.ts";
import { errorBar, horizontalAxis, linearScale, niceTicks, type PlotArea, verticalAxis } from "./axis.ts";
import { colour } from "./palette.ts";
import { el, svgDocument, svgNumber, type SvgElement } from "./svg.ts";

/** One method's line: its name and its rows in ratio order. */
export interface FrontierLine {
  name: string;
  rows: ReportRow[];
}

const RATIO_ENDING = /^(.+)-r\d+(?:\.\d+)?$/;

/**
 * The rows grouped into lines by label stem (the label less a `-r<ratio>`
 * ending), in order of first appearance, each line's rows by ratio (rows
 * without one last, by label).
 */
export function frontierLines(rows: readonly ReportRow[]): FrontierLine[] {
  const lines = new Map<string, ReportRow[]>();
  for (const row of rows) {
    const name = RATIO_ENDING.exec(row.label)?.[1] ?? row.label;
    lines.set(name, [...(lines.get(name) ?? []), row]);
  }
  const byRatio = (a: ReportRow, b: ReportRow) =>
    (a.ratio ?? Infinity) - (b.ratio ?? Infinity) || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);
  return [...lines].map(([name, members]) => ({ name, rows: members.sort(byRatio) }));
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

/** [lo, hi] of `values` widened by 8% of their span on each side. */
function padded(values: readonly number[]): [number, number] {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

/** One panel's x: what it plots and how it is titled. */
interface PanelX {
  key: string;
  title: string;
  of: (row: ReportRow) => number;
  /** The full model's value on this axis (the vertical reference line). */
  full: number;
}

/**
 * The SVG of the frontier for `rows` (docs/REPORT.md). Lines carry
 * `class="line"` and `data-line`, points `class="point"`, `data-line`,
 * `data-label` and `data-ratio`, reference lines `class="reference"` and
 * `data-ref` (`full-ft`, `full-zs`, `full-model`), each panel `class="panel"`
 * and `data-x`: for tests and tooltips. Full FT is the mean over the rows
 * that ran it (they tune the same model) and is left out when none did.
 *
 * @throws Error for no rows
 */
export function frontierSvg(rows: readonly ReportRow[], taskCount: number, metric: string): string {
  if (rows.length === 0) throw new Error("Cannot draw the privacy–utility frontier without rows");
  const lines = frontierLines(rows);
  const fullZs = mean(rows.map((r) => r.full_zs));
  const tuned = rows.flatMap((r) => (r.full_ft === null ? [] : [r.full_ft]));
  const fullFt = tuned.length === 0 ? null : mean(tuned);
  const [y0, y1] = padded([
    ...rows.flatMap((r) => [r.plug_in - (r.std.plug_in ?? 0), r.plug_in + (r.std.plug_in ?? 0)]),
    fullZs,
    ...(fullFt === null ? [] : [fullFt]),
  ]);
  const yTicks = niceTicks(Math.max(0, y0), Math.min(100, y1));
  const panels: PanelX[] = [
    { key: "emulator_zs", title: `Emulator ZS ${metric}, average (%)`, of: (r) => r.emulator_zs, full: fullZs },
    { key: "emulator_ppl", title: "Emulator perplexity (held-out text)", of: (r) => r.ppl.emulator, full: mean(rows.map((r) => r.ppl.full)) },
  ];
  const width = 400;
  const gap = 96;
  const top = 44;
  const bottom = top + 320;

  const panel = (p: PanelX, left: number): SvgElement => {
    const area: PlotArea = { left, right: left + width, top, bottom };
    const xTicks = niceTicks(...padded([...rows.map(p.of), p.full]));
    const x = linearScale([xTicks.lo, xTicks.hi], [area.left, area.right]);
    const y = linearScale([yTicks.lo, yTicks.hi], [area.bottom, area.top]);
    const horizontal = (ref: string, value: number, text: string, dash: string) =>
      el(
        "g",
        { class: "reference", "data-ref": ref },
        el("line", { x1: area.left, x2: area.right, y1: y(value), y2: y(value), stroke: "#666666", "stroke-dasharray": dash }),
        el("text", { x: area.right - 4, y: y(value) - 5, "text-anchor": "end", fill: "#666666" }, `${text} ${value.toFixed(2)}`),
      );
    const parts: SvgElement[] = [
      horizontalAxis(area, xTicks, x, p.title),
      verticalAxis(area, yTicks, y, `Plug-in ${metric}, average of ${taskCount} tasks (%)`),
      horizontal("full-zs", fullZs, "Full ZS", "2 3"),
      ...(fullFt === null ? [] : [horizontal("full-ft", fullFt, "Full FT", "6 4")]),
      el(
        "g",
        { class: "reference", "data-ref": "full-model" },
        el("line", { x1: x(p.full), x2: x(p.full), y1: area.top, y2: area.bottom, stroke: "#999999", "stroke-dasharray": "2 3" }),
        el("text", { x: x(p.full) + 4, y: area.top + 12, fill: "#666666" }, "full model"),
      ),
    ];
    lines.forEach((line, i) => {
      const at = line.rows.map((r) => [x(p.of(r)), y(r.plug_in)] as const);
      parts.push(el(
        "g",
        { class: "method", "data-line": line.name },
        el("polyline", {
          class: "line",
          "data-line": line.name,
          points: at.map(([px, py]) => `${svgNumber(px)},${svgNumber(py)}`).join(" "),
          fill: "none",
          stroke: colour(i),
          "stroke-width": 2,
        }),
        ...line.rows.flatMap((r, k) => {
          const [px, py] = at[k];
          const std = r.std.plug_in;
          const ratio = r.ratio === null ? r.label : String(r.ratio);
          return [
            ...(std !== null && std > 0 ? [errorBar([px, y(r.plug_in + std)], [px, y(r.plug_in - std)])] : []),
            el(
              "circle",
              {
                class: "point", "data-line": line.name, "data-label": r.label, "data-ratio": r.ratio ?? undefined,
                cx: px, cy: py, r: 4.5, fill: colour(i), stroke: "#333333",
              },
              el("title", {}, `${r.label}: ${p.key.replace("_", " ")} ${p.of(r).toFixed(2)}, plug-in ${r.plug_in.toFixed(2)}`),
            ),
            el("text", {
              class: "point-label", x: px + 7, y: py - 7, stroke: "#ffffff", "stroke-width": 3, "paint-order": "stroke",
            }, ratio),
          ];
        }),
      ));
    });
    return el("g", { class: "panel", "data-x": p.key }, ...parts);
  };

  const left = 78;
  const legendY = bottom + 62;
  const perLegendRow = 6;
  const legend = el(
    "g",
    { class: "legend" },
    ...lines.map((line, i) => {
      const [lx, ly] = [left + (i % perLegendRow) * 150, legendY + Math.floor(i / perLegendRow) * 20];
      return el(
        "g",
        {},
        el("line", { x1: lx, x2: lx + 24, y1: ly, y2: ly, stroke: colour(i), "stroke-width": 3 }),
        el("text", { x: lx + 30, y: ly + 4 }, line.name),
      );
    }),
  );
  const spread = rows.some((r) => r.seeds > 1) ? "; error bars: ± 1 std over seeds" : "";
  return svgDocument(left + 2 * width + gap + 24, legendY + 20 * Math.ceil(lines.length / perLegendRow) + 4, [
    el("text", { x: left, y: 24, "font-size": 15, "font-weight": "bold" }, `Privacy–utility frontier (points: emulator ratio)${spread}`),
    panel(panels[0], left),
    panel(panels[1], left + width + gap),
    legend,
  ]);
}
