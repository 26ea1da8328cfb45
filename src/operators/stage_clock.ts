/**
 * Where the time of a pipeline goes, stage by stage (for `offtune bench
 * gradot` and progress reports). Operators take an optional clock and time
 * their own work with it; without one they pay nothing.
 *
 * @module
 */

/** The stages of an emulator build, in pipeline order. */
export type Stage = "read" | "forward" | "backward" | "kfac" | "svd" | "score" | "compress" | "write";

/** Receives the seconds a stage spent on one piece of work. */
export interface StageClock {
  /** Adds `seconds` to `stage`. */
  record(stage: Stage, seconds: number): void;
}

/** Runs `work`, charging its wall time to `stage` on `clock` (when given). */
export function timeStage<T>(clock: StageClock | undefined, stage: Stage, work: () => T): T {
  if (!clock) return work();
  const start = performance.now();
  try {
    return work();
  } finally {
    clock.record(stage, (performance.now() - start) / 1000);
  }
}

/** {@link timeStage} for asynchronous work. */
export async function timeStageAsync<T>(clock: StageClock | undefined, stage: Stage, work: () => Promise<T>): Promise<T> {
  if (!clock) return work();
  const start = performance.now();
  try {
    return await work();
  } finally {
    clock.record(stage, (performance.now() - start) / 1000);
  }
}

/** A clock that sums seconds per stage. */
export function totalsClock(): StageClock & { totals: Map<Stage, number> } {
  const totals = new Map<Stage, number>();
  return { totals, record: (stage, seconds) => totals.set(stage, (totals.get(stage) ?? 0) + seconds) };
}
