/**
 * Progress lines for long work (blocks done, tokens/s, ETA), drawn in place
 * on a TTY and silent under `--quiet`, in CI (`CI` set) or when stderr is not
 * a terminal. One reporter per job; numerics never import this module: they
 * emit stage events (src/events/stage_events.ts), which {@link progressEvents}
 * draws.
 *
 * @module
 */
import process from "node:process";
import type { StageEvents } from "../events/stage_events.ts";

/** What a progress line shows; `unit` names what `done`/`total` count. */
export interface ProgressUpdate {
  done: number;
  total: number;
  unit?: string;
  /** Free text such as the current stage or the loss. */
  detail?: string;
  /** Tokens processed so far, for a tokens/s figure. */
  tokens?: number;
}

/** Draws progress updates; `finish` ends the line. */
export interface ProgressReporter {
  update(update: ProgressUpdate): void;
  finish(message?: string): void;
}

/** Whether progress should be drawn at all (TTY, not quiet, not CI). */
export function progressEnabled(quiet = false): boolean {
  return !quiet && !process.env.CI && Boolean(process.stderr.isTTY);
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/**
 * Creates a reporter labelled `label`. Disabled reporters accept updates and
 * print nothing, so callers never branch on quietness.
 */
export function createProgress(label: string, quiet = false): ProgressReporter {
  const enabled = progressEnabled(quiet);
  const start = performance.now();
  let lastDraw = 0;
  return {
    update({ done, total, unit = "", detail, tokens }) {
      if (!enabled) return;
      const now = performance.now();
      if (now - lastDraw < 100 && done < total) return;
      lastDraw = now;
      const elapsed = (now - start) / 1000;
      const eta = done > 0 ? (elapsed * (total - done)) / done : NaN;
      const parts = [`${label} ${done}/${total}${unit ? " " + unit : ""}`];
      if (detail) parts.push(detail);
      if (tokens !== undefined && elapsed > 0) {
        parts.push(`${Math.round(tokens / elapsed)} tok/s`);
      }
      parts.push(`ETA ${formatSeconds(eta)}`);
      process.stderr.write(`\r\x1b[K${parts.join(" | ")}`);
    },
    finish(message) {
      if (!enabled) return;
      const elapsed = (performance.now() - start) / 1000;
      process.stderr.write(
        `\r\x1b[K${label} ${message ?? "done"} in ${formatSeconds(elapsed)}\n`,
      );
    },
  };
}

/**
 * A stage-event sink that draws the progress marks (events with `done` and
 * `total`) on `progress`: their unit and detail (else the block and stage, for per-block work),
 * and the tokens of all marks so far for a tokens/s figure. Timing-only
 * events are ignored.
 */
export function progressEvents(progress: ProgressReporter): StageEvents {
  let tokens = 0;
  return {
    next(e) {
      if (e.done === undefined || e.total === undefined) return;
      tokens += e.tokens ?? 0;
      const where = e.block === undefined ? undefined : `block ${e.block + 1} ${e.stage}`;
      progress.update({ done: e.done, total: e.total, unit: e.unit, detail: e.detail ?? where, tokens: tokens > 0 ? tokens : undefined });
    },
  };
}
