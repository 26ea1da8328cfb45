/**
 * One stream of stage events for every long job (emulator builds,
 * evaluation, plug-in, tuning): where the time goes and how far the job is.
 * Work that takes time reports a {@link StageEvent} to an optional
 * {@link StageEvents} sink — an RxJS `Subject<StageEvent>` or any object with
 * `next` — and pays nothing without one. The CLI's progress line
 * (`src/cli/progress.ts` `progressEvents`) and the benchmarks' per-stage
 * seconds ({@link stageTotals}) are two consumers of the same events.
 *
 * An event is a timing, a progress mark, or both: `seconds` is the wall time
 * of the piece of work it reports (0 for a mark that times nothing), and
 * `done`/`total` are present when the emitter knows how far the whole job is.
 *
 * @module
 */
import process from "node:process";

/**
 * The stages of an emulator build in pipeline order (`read` … `write`), then
 * those of the other jobs: `head` (the calibration loss at the LM head),
 * `loglikelihood` (evaluation and perplexity requests), `tune` (optimizer
 * steps of adapter or full fine-tuning), `pretrain` (pretraining steps).
 */
export type Stage =
  | "read"
  | "forward"
  | "backward"
  | "kfac"
  | "svd"
  | "score"
  | "compress"
  | "write"
  | "head"
  | "loglikelihood"
  | "tune"
  | "pretrain";

/** A piece of work that finished (module notes: a timing, a progress mark, or both). */
export interface StageEvent {
  /** The stage the work belongs to. */
  stage: Stage;
  /** The transformer block the work was on, for per-block work. */
  block?: number;
  /** Units of the whole job done once this work finished (with {@link total}: a progress mark). */
  done?: number;
  /** Units of the whole job. */
  total?: number;
  /** What `done`/`total` count: "steps", "blocks", "requests", … */
  unit?: string;
  /** Wall seconds of this piece of work (0 for a progress mark that times nothing). */
  seconds: number;
  /** Tokens this piece of work processed (not a running total). */
  tokens?: number;
  /** The mean loss the work measured (the calibration loss; a tuning step's loss). */
  loss?: number;
  /** Free text for a progress line (e.g. the epoch and learning rate). */
  detail?: string;
}

/** Where stage events go: an RxJS `Subject<StageEvent>`, an `Observer`, or any object with `next`. */
export interface StageEvents {
  /** Receives one event; must not throw (the work it reports goes on). */
  next(event: StageEvent): void;
}

/**
 * Runs `work` and, when `events` is given, reports its wall time as a
 * `stage` event (with the fields of `extra`, e.g. the block).
 */
export function timeStage<T>(
  events: StageEvents | undefined,
  stage: Stage,
  work: () => T,
  extra: Omit<StageEvent, "stage" | "seconds"> = {},
): T {
  if (!events) return work();
  const start = performance.now();
  const result = work();
  events.next({ ...extra, stage, seconds: (performance.now() - start) / 1000 });
  return result;
}

/** {@link timeStage} for asynchronous work. */
export async function timeStageAsync<T>(
  events: StageEvents | undefined,
  stage: Stage,
  work: () => Promise<T>,
  extra: Omit<StageEvent, "stage" | "seconds"> = {},
): Promise<T> {
  if (!events) return work();
  const start = performance.now();
  const result = await work();
  events.next({ ...extra, stage, seconds: (performance.now() - start) / 1000 });
  return result;
}

/**
 * A sink that sums the seconds of every event per stage (`offtune
 * build-emulator --timings`, `offtune bench gradot`), passing each event on
 * to `forward` when given.
 */
export function stageTotals(forward?: StageEvents): StageEvents & { totals: Map<Stage, number> } {
  const totals = new Map<Stage, number>();
  return {
    totals,
    next(event) {
      if (event.seconds > 0) totals.set(event.stage, (totals.get(event.stage) ?? 0) + event.seconds);
      forward?.next(event);
    },
  };
}

/** The process's peak resident set size so far, in bytes (the benchmarks' memory figure). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}
