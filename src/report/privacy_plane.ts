/**
 * The utility/privacy plane (docs/METHOD.md §1): one point per report row at
 * x = Δ (Plug-in − Emulator FT, the privacy margin: larger is better) and
 * y = Plug-in task average (utility: higher is better), with one seed std as
 * error bars on both axes and a dashed line at Δ = 0, where the emulator is as
 * good as the plug-in model. Good methods sit top right.
 *
 * @module
 */
import type { ReportRow } from "./aggregate.ts";
import { errorBar, horizontalAxis, linearScale, niceTicks, type PlotArea, verticalAxis } from "./axis.ts";
import { colour } from "./palette.ts";
import { el, svgDocument, type SvgElement } from "./svg.ts";

const CHAR = 6.6; // approximate px per character at the 12 px font

/**
 * The SVG of the plane for `rows`. Points carry `class="point"` and
 * `data-label`, and a `<title>` with their coordinates, for tests and tooltips.
 * The x range always includes Δ = 0.
 */
export function privacyPlaneSvg(rows: readonly ReportRow[], taskCount: number, metric: string): string {
  if (rows.length === 0) throw new Error("Cannot draw the utility/privacy plane without rows");
  const xs = rows.flatMap((r) => [r.delta - (r.std.delta ?? 0), r.delta + (r.std.delta ?? 0)]);
  const ys = rows.flatMap((r) => [r.plug_in - (r.std.plug_in ?? 0), r.plug_in + (r.std.plug_in ?? 0)]);
  const padded = (values: number[]): [number, number] => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = (hi - lo) * 0.08;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = padded([...xs, 0]);
  const [y0, y1] = padded(ys);
  const xTicks = niceTicks(x0, x1);
  const yTicks = niceTicks(Math.max(0, y0), Math.min(100, y1));
  const area: PlotArea = { left: 78, right: 78 + 520, top: 44, bottom: 44 + 340 };
  const x = linearScale([xTicks.lo, xTicks.hi], [area.left, area.right]);
  const y = linearScale([yTicks.lo, yTicks.hi], [area.bottom, area.top]);

  const points: SvgElement[] = [];
  rows.forEach((row, i) => {
    const px = x(row.delta);
    const py = y(row.plug_in);
    const parts: SvgElement[] = [];
    if (row.std.delta !== null && row.std.delta > 0) {
      parts.push(errorBar([x(row.delta - row.std.delta), py], [x(row.delta + row.std.delta), py]));
    }
    if (row.std.plug_in !== null && row.std.plug_in > 0) {
      parts.push(errorBar([px, y(row.plug_in + row.std.plug_in)], [px, y(row.plug_in - row.std.plug_in)]));
    }
    const spread = (v: number, s: number | null) => `${v.toFixed(2)}${s === null ? "" : ` ± ${s.toFixed(2)}`}`;
    parts.push(
      el(
        "circle",
        { class: "point", "data-label": row.label, cx: px, cy: py, r: 5, fill: colour(i), stroke: "#333333" },
        el("title", {}, `${row.label}: Δ ${spread(row.delta, row.std.delta)}, plug-in ${spread(row.plug_in, row.std.plug_in)}`),
      ),
    );
    const fitsRight = px + 9 + row.label.length * CHAR <= area.right;
    parts.push(
      el(
        "text",
        {
          class: "point-label",
          x: fitsRight ? px + 9 : px - 9,
          y: py - 7,
          "text-anchor": fitsRight ? "start" : "end",
          // a white halo keeps the label legible over grid lines and error bars
          stroke: "#ffffff",
          "stroke-width": 3,
          "paint-order": "stroke",
        },
        row.label,
      ),
    );
    points.push(el("g", { class: "row" }, ...parts));
  });

  const zero = x(0);
  const seeds = rows.some((r) => r.seeds > 1) ? "; error bars: ± 1 std over seeds" : "";
  return svgDocument(area.right + 24, area.bottom + 56, [
    el("text", { x: area.left, y: 24, "font-size": 15, "font-weight": "bold" }, `Utility vs privacy${seeds}`),
    horizontalAxis(area, xTicks, x, "Δ = Plug-in − Emulator FT (points): privacy →"),
    verticalAxis(area, yTicks, y, `Plug-in ${metric}, average of ${taskCount} tasks (%)`),
    el("line", {
      class: "zero-line", x1: zero, x2: zero, y1: area.top, y2: area.bottom,
      stroke: "#888888", "stroke-dasharray": "5 4",
    }),
    el("g", { class: "points" }, ...points),
  ]);
}
