/**
 * The per-task bar chart of one report row (docs/REPORT.md): one group per
 * task plus the task average, one bar per series (Emulator FT, Plug-in, Full
 * FT), each with its seed spread as an error bar. One chart per row: with
 * every method's three series in one chart the groups would be unreadable.
 *
 * @module
 */
import { ACCURACY_HEADINGS, type ReportRow } from "./aggregate.ts";
import { errorBar, linearScale, niceTicks, type PlotArea, verticalAxis } from "./axis.ts";
import { colour } from "./palette.ts";
import { el, svgDocument, type SvgElement } from "./svg.ts";

/** The series of the chart, in bar order within a group (docs/METHOD.md §1). */
export const BAR_SERIES = ["emulator_ft", "plug_in", "full_ft"] as const;

/** Name of the group holding the task averages, drawn after the tasks. */
export const AVERAGE_GROUP = "average";

const BAR = 16;
const BAR_GAP = 2;
const GROUP_GAP = 26;
const CHAR = 6.6; // approximate px per character at the 12 px font
const TITLE_CHAR = 9; // approximate px per character of the 15 px bold title

/**
 * The SVG of `row`'s per-task bars over `tasks`. A series whose values are
 * all null (Full FT not run) is left out, legend included; a single null value
 * leaves its slot empty. Bars carry `class="bar"`, `data-series` and
 * `data-task`, and a `<title>` with the value, for tests and tooltips.
 */
export function taskBarsSvg(row: ReportRow, tasks: readonly string[], metric: string): string {
  const groups = [...tasks, AVERAGE_GROUP];
  const cell = (group: string) => (group === AVERAGE_GROUP ? { values: row, std: row.std } : { values: row.per_task[group], std: row.per_task[group].std });
  const series = BAR_SERIES.filter((s) => groups.some((g) => cell(g).values[s] !== null));
  const groupWidth = series.length * BAR + (series.length - 1) * BAR_GAP + GROUP_GAP;

  let top = 0;
  for (const g of groups) {
    for (const s of series) {
      const { values, std } = cell(g);
      if (values[s] !== null) top = Math.max(top, (values[s] as number) + (std[s] ?? 0));
    }
  }
  const ticks = niceTicks(0, Math.min(100, Math.max(top, 1)));

  const longest = Math.max(...groups.map((g) => g.length)) * CHAR;
  const rotate = longest > groupWidth - 4;
  const left = 78;
  const seeds = row.seeds === 1 ? "1 seed" : `${row.seeds} seeds, ± 1 std`;
  const title = `${row.label}: accuracy per task (${seeds})`;
  const plotWidth = Math.max(groups.length * groupWidth, 420, title.length * TITLE_CHAR - 24);
  const area: PlotArea = { left, right: left + plotWidth, top: 64, bottom: 64 + 260 };
  const width = area.right + 24;
  const height = area.bottom + (rotate ? 24 + longest * 0.6 : 34) + 8;
  const y = linearScale([ticks.lo, ticks.hi], [area.bottom, area.top]);
  const slot = plotWidth / groups.length;

  const bars: SvgElement[] = [];
  const labels: SvgElement[] = [];
  groups.forEach((group, gi) => {
    const { values, std } = cell(group);
    const start = area.left + gi * slot + (slot - (groupWidth - GROUP_GAP)) / 2;
    series.forEach((s, si) => {
      const value = values[s];
      if (value === null) return;
      const x = start + si * (BAR + BAR_GAP);
      const spread = std[s];
      const name = group === AVERAGE_GROUP ? `the average of ${tasks.length} tasks` : group;
      bars.push(
        el(
          "rect",
          {
            class: "bar",
            "data-series": s,
            "data-task": group,
            x,
            y: y(value),
            width: BAR,
            height: area.bottom - y(value),
            fill: colour(si),
          },
          el("title", {}, `${ACCURACY_HEADINGS[s]} on ${name}: ${value.toFixed(2)}${spread === null ? "" : ` ± ${spread.toFixed(2)}`}`),
        ),
      );
      if (spread !== null && spread > 0) {
        const cx = x + BAR / 2;
        bars.push(errorBar([cx, y(Math.max(ticks.lo, value - spread))], [cx, y(Math.min(ticks.hi, value + spread))], 3));
      }
    });
    const cx = area.left + (gi + 0.5) * slot;
    const ly = area.bottom + 16;
    labels.push(
      el(
        "text",
        rotate
          ? { class: "group-label", x: cx, y: ly, "text-anchor": "end", transform: `rotate(-35 ${cx} ${ly})` }
          : { class: "group-label", x: cx, y: ly, "text-anchor": "middle" },
        group,
      ),
    );
  });

  const divider = area.left + tasks.length * slot;
  const legend = series.map((s, si) => {
    const x = area.left + si * 110;
    return el(
      "g",
      { class: "legend-item" },
      el("rect", { x, y: 36, width: 12, height: 12, fill: colour(si) }),
      el("text", { x: x + 17, y: 46 }, ACCURACY_HEADINGS[s]),
    );
  });
  return svgDocument(width, height, [
    el("text", { x: area.left, y: 22, "font-size": 15, "font-weight": "bold" }, title),
    el("g", { class: "legend" }, ...legend),
    verticalAxis(area, ticks, y, `${metric} (%)`),
    el("line", {
      class: "divider", x1: divider, x2: divider, y1: area.top, y2: area.bottom,
      stroke: "#aaaaaa", "stroke-dasharray": "4 4",
    }),
    el("g", { class: "bars" }, ...bars),
    el("g", { class: "group-labels" }, ...labels),
  ]);
}
