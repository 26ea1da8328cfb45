/**
 * The pretraining loss curve as SVG: training loss per step and validation
 * loss where it was measured, against tokens seen (log.jsonl of `offtune
 * pretrain`), so fixtures/README can show how a shipped model was trained.
 * A second plot draws the tracked validation perplexity of the model and of
 * its half-middle LayerDrop, which shows when the middle blocks start to
 * matter (fixtures/README.md "base").
 *
 * @module
 */
import { horizontalAxis, linearScale, niceTicks, type PlotArea, verticalAxis } from "./axis.ts";
import { colour } from "./palette.ts";
import { el, svgDocument, svgNumber } from "./svg.ts";

/** One line of a pretraining log (the fields the plot reads). */
export interface TrainingLogLine {
  /** The step. */
  step: number;
  /** Training tokens seen after it. */
  tokens: number;
  /**
   * Training loss of the step's batch; null on the step-0 line of a run
   * started from a checkpoint (`pretrain --init`), which holds only the
   * checkpoint's validation loss.
   */
  loss: number | null;
  /** Validation loss on evaluation steps, else null. */
  val_loss: number | null;
  /** Validation loss of the whole model at a tracking step (`--track-every`). */
  track_val_loss?: number;
  /** Validation loss of the model's half-middle LayerDrop at the same step. */
  track_layerdrop_val_loss?: number;
}

/** Parses `log.jsonl` text; `source` names the file in errors. */
export function parseTrainingLog(text: string, source: string): TrainingLogLine[] {
  return text.split("\n").filter((l) => l.trim() !== "").map((line, i) => {
    const v = JSON.parse(line) as Partial<TrainingLogLine>;
    const evaluationOnly = v.step === 0 && v.loss === null && typeof v.val_loss === "number";
    if (typeof v.tokens !== "number" || typeof v.step !== "number" || (typeof v.loss !== "number" && !evaluationOnly)) {
      throw new Error(
        `Invalid training log "${source}" line ${i + 1}: needs numeric step, tokens and loss (null only at step 0 with a val_loss)`,
      );
    }
    const tracked = typeof v.track_val_loss === "number" && typeof v.track_layerdrop_val_loss === "number"
      ? { track_val_loss: v.track_val_loss, track_layerdrop_val_loss: v.track_layerdrop_val_loss }
      : {};
    return {
      step: v.step,
      tokens: v.tokens,
      loss: v.loss as number | null,
      val_loss: typeof v.val_loss === "number" ? v.val_loss : null,
      ...tracked,
    };
  });
}

/**
 * One curve from a run and its continuations (`pretrain --init`, whose log
 * counts its own steps and tokens from a step-0 line holding the starting
 * checkpoint's validation loss): each later log's steps and tokens are
 * shifted to follow the log before it, so the plots draw the model's whole
 * training (fixtures/README.md "base").
 *
 * @throws Error naming the log when a continuation does not begin with the
 *   step-0 line that `--init` writes, or its steps do not increase
 */
export function chainTrainingLogs(logs: readonly { lines: readonly TrainingLogLine[]; source: string }[]): TrainingLogLine[] {
  const chained: TrainingLogLine[] = [];
  for (const [k, { lines, source }] of logs.entries()) {
    if (k > 0 && (lines.length === 0 || lines[0].step !== 0 || lines[0].loss !== null)) {
      throw new Error(
        `Training log "${source}" does not continue the log before it: a run started with pretrain --init begins with a step-0 line holding only val_loss`,
      );
    }
    const previous = chained[chained.length - 1];
    const [stepBase, tokenBase] = previous ? [previous.step, previous.tokens] : [0, 0];
    for (const [i, line] of lines.entries()) {
      if (i > 0 && line.step <= lines[i - 1].step) {
        throw new Error(`Training log "${source}" line ${i + 1}: step ${line.step} does not follow step ${lines[i - 1].step}`);
      }
      chained.push({ ...line, step: line.step + stepBase, tokens: line.tokens + tokenBase });
    }
  }
  return chained;
}

/**
 * The loss curve of `lines` (train loss smoothed over `smooth` steps) as an
 * SVG document; a step-0 line without training loss adds only its
 * validation point.
 */
export function trainingCurveSvg(lines: readonly TrainingLogLine[], title: string, smooth = 10): string {
  const trained = lines.filter((l): l is TrainingLogLine & { loss: number } => l.loss !== null);
  if (trained.length === 0) throw new Error("Cannot plot a training log without a trained step");
  const smoothed = trained.map((_, i) => {
    const from = Math.max(0, i - smooth + 1);
    const window = trained.slice(from, i + 1);
    return window.reduce((s, l) => s + l.loss, 0) / window.length;
  });
  const val = lines.filter((l) => l.val_loss !== null);
  const losses = [...smoothed, ...val.map((l) => l.val_loss as number)];
  const xTicks = niceTicks(0, lines[lines.length - 1].tokens / 1e6);
  const yTicks = niceTicks(Math.min(...losses), Math.max(...losses));
  const area: PlotArea = { left: 70, right: 590, top: 40, bottom: 320 };
  const x = linearScale([xTicks.lo, xTicks.hi], [area.left, area.right]);
  const y = linearScale([yTicks.lo, yTicks.hi], [area.bottom, area.top]);
  const path = trained.map((l, i) => `${i === 0 ? "M" : "L"}${svgNumber(x(l.tokens / 1e6))},${svgNumber(y(smoothed[i]))}`).join(" ");
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

/**
 * Validation perplexity of the model and of its half-middle LayerDrop at each
 * tracking step of `lines`, against tokens seen (log scale in perplexity), with
 * the LayerDrop's increase in % printed at the last point.
 *
 * @throws Error when the log has no tracking steps
 */
export function layerDropCurveSvg(lines: readonly TrainingLogLine[], title: string): string {
  const tracked = lines.filter((l) => l.track_val_loss !== undefined && l.track_layerdrop_val_loss !== undefined);
  if (tracked.length === 0) throw new Error("The training log has no tracked LayerDrop losses (pretrain --track-every)");
  const series = [
    { name: "model", loss: tracked.map((l) => l.track_val_loss as number) },
    { name: "half-middle LayerDrop", loss: tracked.map((l) => l.track_layerdrop_val_loss as number) },
  ];
  const all = series.flatMap((s) => s.loss); // log-perplexity = loss in nats
  const xTicks = niceTicks(0, tracked[tracked.length - 1].tokens / 1e6);
  const yTicks = niceTicks(Math.min(...all) / Math.LN10, Math.max(...all) / Math.LN10);
  const area: PlotArea = { left: 70, right: 590, top: 40, bottom: 320 };
  const x = linearScale([xTicks.lo, xTicks.hi], [area.left, area.right]);
  const y = linearScale([yTicks.lo, yTicks.hi], [area.bottom, area.top]);
  const last = tracked.length - 1;
  const increase = 100 * (Math.exp(series[1].loss[last] - series[0].loss[last]) - 1);
  return svgDocument(660, 380, [
    el("text", { x: 330, y: 22, "text-anchor": "middle", "font-size": 14 }, title),
    verticalAxis(area, yTicks, y, "log10 validation perplexity"),
    horizontalAxis(area, xTicks, x, "tokens seen (millions)"),
    ...series.flatMap((s, k) => [
      el("path", {
        class: `track-${k}`,
        d: tracked.map((l, i) => `${i === 0 ? "M" : "L"}${svgNumber(x(l.tokens / 1e6))},${svgNumber(y(s.loss[i] / Math.LN10))}`).join(" "),
        fill: "none",
        stroke: colour(k),
        "stroke-width": 1.5,
      }),
      ...tracked.map((l, i) => el("circle", { cx: x(l.tokens / 1e6), cy: y(s.loss[i] / Math.LN10), r: 3, fill: colour(k) })),
      el("text", { x: area.right - 200, y: area.top + 16 * (k + 1), fill: colour(k), "font-size": 12 }, s.name),
    ]),
    el(
      "text",
      { x: area.right - 200, y: area.top + 52, "font-size": 12 },
      `last: ppl ${Math.exp(series[0].loss[last]).toFixed(1)} vs ${Math.exp(series[1].loss[last]).toFixed(1)} (+${increase.toFixed(0)}%)`,
    ),
  ]);
}
