/**
 * Numeric axes for the report's charts: "nice" tick steps (1, 2 or 5 × 10^k),
 * linear scales from data to pixels, and the SVG of an axis with its ticks,
 * tick labels, grid lines and title.
 *
 * @module
 */
import { el, type SvgElement } from "./svg.ts";

/** Tick positions covering a data range: `lo` and `hi` are the first and last tick. */
export interface Ticks {
  lo: number;
  hi: number;
  step: number;
  values: number[];
  /** Decimals that print every tick exactly. */
  decimals: number;
}

/**
 * Ticks covering [min, max] with a step of 1, 2 or 5 × 10^k chosen so that
 * about `target` intervals result. A zero-width range is widened by one unit
 * (or 10% of its magnitude) on each side.
 */
export function niceTicks(min: number, max: number, target = 5): Ticks {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) {
    throw new Error(`Cannot place ticks on the range [${min}, ${max}]`);
  }
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) / 10;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / target;
  const power = Math.floor(Math.log10(raw));
  const unit = 10 ** power;
  const fraction = raw / unit;
  const mantissa = fraction <= 1.5 ? 1 : fraction <= 3 ? 2 : fraction <= 7 ? 5 : 10;
  const step = mantissa * unit;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  const values: number[] = [];
  for (let i = first; i <= last; i++) values.push(Number((i * step).toFixed(decimals)));
  return { lo: values[0], hi: values[values.length - 1], step, values, decimals };
}

/** The linear map sending `domain[0]` to `range[0]` and `domain[1]` to `range[1]`. */
export function linearScale(domain: [number, number], range: [number, number]): (value: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  if (d0 === d1) throw new Error(`Cannot scale the empty domain [${d0}, ${d1}]`);
  return (value) => r0 + ((value - d0) / (d1 - d0)) * (r1 - r0);
}

/** The plot rectangle inside a chart, in pixels (y grows downwards). */
export interface PlotArea {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const GRID = "#e3e3e3";
const INK = "#333333";

/**
 * A vertical (y) axis at the plot's left edge: line, ticks, labels, horizontal
 * grid lines across the plot, and a rotated title.
 */
export function verticalAxis(area: PlotArea, ticks: Ticks, scale: (v: number) => number, title: string): SvgElement {
  const parts: SvgElement[] = [];
  for (const value of ticks.values) {
    const y = scale(value);
    parts.push(
      el("line", { class: "grid", x1: area.left, x2: area.right, y1: y, y2: y, stroke: GRID }),
      el("line", { class: "tick", x1: area.left - 5, x2: area.left, y1: y, y2: y, stroke: INK }),
      el("text", { x: area.left - 8, y: y + 4, "text-anchor": "end", fill: INK }, value.toFixed(ticks.decimals)),
    );
  }
  const middle = (area.top + area.bottom) / 2;
  parts.push(
    el("line", { class: "axis", x1: area.left, x2: area.left, y1: area.top, y2: area.bottom, stroke: INK }),
    el("text", {
      x: area.left - 46,
      y: middle,
      "text-anchor": "middle",
      transform: `rotate(-90 ${area.left - 46} ${middle})`,
      fill: INK,
    }, title),
  );
  return el("g", { class: "y-axis" }, ...parts);
}

/**
 * A horizontal (x) axis at the plot's bottom edge: line, ticks, labels,
 * vertical grid lines across the plot, and a title below.
 */
export function horizontalAxis(area: PlotArea, ticks: Ticks, scale: (v: number) => number, title: string): SvgElement {
  const parts: SvgElement[] = [];
  for (const value of ticks.values) {
    const x = scale(value);
    parts.push(
      el("line", { class: "grid", x1: x, x2: x, y1: area.top, y2: area.bottom, stroke: GRID }),
      el("line", { class: "tick", x1: x, x2: x, y1: area.bottom, y2: area.bottom + 5, stroke: INK }),
      el("text", { x, y: area.bottom + 18, "text-anchor": "middle", fill: INK }, value.toFixed(ticks.decimals)),
    );
  }
  parts.push(
    el("line", { class: "axis", x1: area.left, x2: area.right, y1: area.bottom, y2: area.bottom, stroke: INK }),
    el("text", { x: (area.left + area.right) / 2, y: area.bottom + 40, "text-anchor": "middle", fill: INK }, title),
  );
  return el("g", { class: "x-axis" }, ...parts);
}

/**
 * An error bar from `from` to `to` (pixel points) with caps of half-width
 * `cap` perpendicular to it; the bar is vertical when the x coordinates match.
 */
export function errorBar(from: [number, number], to: [number, number], cap = 4, cls = "error-bar"): SvgElement {
  const vertical = from[0] === to[0];
  const capAt = ([x, y]: [number, number]) =>
    vertical
      ? el("line", { x1: x - cap, x2: x + cap, y1: y, y2: y })
      : el("line", { x1: x, x2: x, y1: y - cap, y2: y + cap });
  return el(
    "g",
    { class: cls, stroke: INK, "stroke-width": 1 },
    el("line", { x1: from[0], y1: from[1], x2: to[0], y2: to[1] }),
    capAt(from),
    capAt(to),
  );
}
