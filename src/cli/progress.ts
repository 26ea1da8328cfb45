/**
 * Progress lines for long work (steps done, tokens/s, ETA), written to
 * stderr in one of three ways (tqdm's convention):
 *
 * - `live`: on a terminal, one line redrawn in place;
 * - `lines`: when stderr is a file or a pipe (`npm run demo > log 2>&1`),
 *   one plain line per update for a reporter made with `every: "update"`
 *   (coarse steps, such as an experiment's processes), else at most one
 *   line every {@link PLAIN_INTERVAL_S} seconds, and always the last one;
 * - `off`: under `--quiet`, `OFFTUNE_QUIET=1` (set for the child processes
 *   of a composed verb) or in CI (`CI` set).
 *
 * A reporter made with `log: true` (a composed verb's steps, e.g. `demo`)
 * writes its plain lines to stdout when stdout is not a terminal, so
 * `npm run demo > file` records the run's steps in the file.
 *
 * One reporter per job; numerics never import this module: they emit stage
 * events (src/events/stage_events.ts), which {@link progressEvents} draws.
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

/** How progress is shown (module notes). */
export type ProgressMode = "live" | "lines" | "off";

/** Seconds between plain lines when stderr is not a terminal (tqdm's `mininterval` for files is similar). */
export const PLAIN_INTERVAL_S = 30;

/** The mode for this process: `quiet` is the verb's `--quiet`; the environment and stderr decide the rest. */
export function progressMode(
  quiet = false,
  env: Record<string, string | undefined> = process.env,
  isTTY = Boolean(process.stderr.isTTY),
): ProgressMode {
  if (quiet || env.OFFTUNE_QUIET === "1" || env.CI) return "off";
  return isTTY ? "live" : "lines";
}

/**
 * Seconds of work before a rate or an ETA is shown: over the first
 * milliseconds one batch's tokens would read as millions per second.
 */
const MIN_RATE_SECONDS = 1;

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** `update`: a plain line for every update (coarse steps); default: one every {@link PLAIN_INTERVAL_S} s. */
  every?: "update" | "interval";
  /** The lines are the job's log: plain lines to stdout when stdout is not a terminal (module notes). */
  log?: boolean;
  /** Overrides {@link progressMode} (tests). */
  mode?: ProgressMode;
  /** Where lines go (default stderr). */
  write?: (text: string) => void;
  /** Milliseconds clock (default `performance.now`). */
  now?: () => number;
}

/**
 * Creates a reporter labelled `label` (module notes). Disabled reporters
 * accept updates and print nothing, so callers never branch on quietness.
 */
export function createProgress(label: string, quiet = false, options: ProgressOptions = {}): ProgressReporter {
  let mode = options.mode ?? progressMode(quiet);
  let write = options.write ?? ((text: string) => void process.stderr.write(text));
  if (options.log && options.mode === undefined && mode !== "off" && !process.stdout.isTTY) {
    mode = "lines";
    write = options.write ?? ((text: string) => void process.stdout.write(text));
  }
  const now = options.now ?? (() => performance.now());
  const start = now();
  let lastDraw = -Infinity;
  const line = ({ done, total, unit = "", detail, tokens }: ProgressUpdate, at: number) => {
    const elapsed = (at - start) / 1000;
    const measured = elapsed >= MIN_RATE_SECONDS;
    const eta = done > 0 && measured ? (elapsed * (total - done)) / done : NaN;
    const parts = [`${label} ${done}/${total}${unit ? " " + unit : ""}`];
    if (detail) parts.push(detail);
    if (tokens !== undefined && measured) parts.push(`${Math.round(tokens / elapsed)} tok/s`);
    parts.push(mode === "lines" ? `${formatSeconds(elapsed)} elapsed, ETA ${formatSeconds(eta)}` : `ETA ${formatSeconds(eta)}`);
    return parts.join(" | ");
  };
  return {
    update(update) {
      if (mode === "off") return;
      const at = now();
      const last = update.done >= update.total;
      if (mode === "live") {
        if (at - lastDraw < 100 && !last) return;
        lastDraw = at;
        write(`\r\x1b[K${line(update, at)}`);
        return;
      }
      if (options.every !== "update" && at - lastDraw < PLAIN_INTERVAL_S * 1000 && !last) return;
      lastDraw = at;
      write(`${line(update, at)}\n`);
    },
    finish(message) {
      if (mode === "off") return;
      const text = `${label} ${message ?? "done"} in ${formatSeconds((now() - start) / 1000)}\n`;
      write(mode === "live" ? `\r\x1b[K${text}` : text);
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
