/**
 * The pretraining loss curve as SVG: training loss per step and validation
 * loss where it was measured, against tokens seen (log.jsonl of `offtune
 * pretrain`), so fixtures/README can show how a shipped model was trained.
 *
 * @module
 */
import { horizontalAxis, linearScale, niceTicks, type PlotArea, verticalAxis } from "./axis.ts";
import { colour } from "./palette.ts";
import { el, svgDocument, svgNumber } from "./svg.ts";

/** One line of a pretraining log (the fields the plot reads). */
export interface TrainingLogLine {
  step: number;
  tokens: number;
  loss: number;
  val_loss: number | null;
}

/** Parses `log.jsonl` text; `source` names the file in errors. */
export function parseTrainingLog(text: string, source: string): TrainingLogLine[] {
  return text.split("\n").filter((l) => l.trim() !== "").map((line, i) => {
    const v = JSON.parse(line) as Partial<TrainingLogLine>;
    if (typeof v.tokens !== "number" || typeof v.loss !== "number" || typeof v.step !== "number") {
      throw new Error(`Invalid training log "${source}" line ${i + 1}: needs numeric step, tokens and loss`);
    }
    return { step: v.step, tokens: v.tokens, loss: v.loss, val_loss: typeof v.val_loss === "number" ? v.val_loss : null };
  });
}

/** The loss curve of `lines` (train loss smoothed over `smooth` steps) as an SVG document. */
export function trainingCurveSvg(lines: readonly TrainingLogLine[], title: string, smooth = 10): string {
  if (lines.length === 0) throw new Error("Cannot plot an empty training log");
  const smoothed = lines.map((_, i) => {
    const from = Math.max(0, i - smooth + 1);
    const window = lines.slice(from, i + 1);
    return window.reduce((s, l) => s + l.loss, 0) / window.length;
  });
  const val = lines.filter((l) => l.val_loss !== null);
  const losses = [...smoothed, ...val.map((l) => l.val_loss as number)];
  const xTicks = niceTicks(0, lines[lines.length - 1].tokens / 1e6);
  const yTicks = niceTicks(Math.min(...losses), Math.max(...losses));
  const area: PlotArea = { left: 70, right: 590, top: 40, bottom: 320 };
  const x = linearScale([xTicks.lo, xTicks.hi], [area.left, area.right]);
  const y = linearScale([yTicks.lo, yTicks.hi], [area.bottom, area.top]);
  const path = lines.map((l, i) => `${i === 0 ? "M" : "L"}${svgNumber(x(l.tokens / 1e6))},${svgNumber(y(smoothed[i]))}`).join(" ");
  return svgDocument(660, 380, [
    el("text", { x: 330, y: 22, "text-anchor": "middle", "font-size": 14 }, title),
    verticalAxis(area, yTicks, y, "loss (nats/token)"),
    horizontalAxis(area, xTicks, x, "tokens seen (millions)"),
    el("path", { class: "train", d: path, fill: "none", stroke: colour(0), "stroke-width": 1.5 }),
    ...val.map((l) =>
      el("circle", { class: "valid", cx: x(l.tokens / 1e6), cy: y(l.val_loss as number), r: 3.5, fill: colour(1) })
    ),
    el("text", { x: area.right - 150, y: area.top + 16, fill: colour(0), "font-size": 12 }, `train (mean of ${smooth} steps)`),
    el("text", { x: area.right - 150, y: area.top + 32, fill: colour(1), "font-size": 12 }, "validation"),
  ]);
}
