/**
 * SIGINT and SIGTERM as a cooperative stop (docs/GUARANTEES.md
 * "Interrupts"): the first signal aborts an {@link AbortSignal} that long
 * work checks at its boundaries (a block of a build, a step of training),
 * where it stops, cleans up and exits with 128 + the signal's number (130,
 * 143); a second signal exits at once.
 *
 * A signal is delivered only when the event loop turns, and a pipeline whose
 * stages resolve promises synchronously never lets it turn: work that wants
 * to be stoppable awaits {@link yieldToSignals} at each boundary.
 *
 * @module
 */
import process from "node:process";

/** The signals that stop a verb. */
export type StopSignal = "SIGINT" | "SIGTERM";

const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGINT: 2, SIGTERM: 15 };

/** The shell's exit status for a process ended by `signal`: 128 + its number (SIGINT 130, SIGTERM 143). */
export function signalExitCode(signal: StopSignal): number {
  return 128 + SIGNAL_NUMBERS[signal];
}

/** Thrown (as an abort reason) where work stops because of a signal. */
export class Interrupted extends Error {
  /** The signal that stopped the work. */
  readonly signal: StopSignal;

  constructor(signal: StopSignal) {
    super(`Interrupted by ${signal}`);
    this.name = "Interrupted";
    this.signal = signal;
  }

  /** The exit status to end the process with. */
  get exitCode(): number {
    return signalExitCode(this.signal);
  }
}

/** A listening {@link listenForInterrupts}: its signal, and `close` to stop listening. */
export interface InterruptListener {
  /** Aborted at the first SIGINT/SIGTERM, with an {@link Interrupted} as its reason. */
  readonly signal: AbortSignal;
  /** The signal received, if any. */
  readonly received: StopSignal | undefined;
  /** Removes the handlers (the default action applies again). */
  close(): void;
}

/**
 * Turns the first SIGINT/SIGTERM into an aborted signal; a second one exits
 * at once with the signal's status (after `process.on("exit")` handlers, so
 * open activation stores are still removed).
 */
export function listenForInterrupts(): InterruptListener {
  const controller = new AbortController();
  let received: StopSignal | undefined;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const handler = () => {
      if (received) process.exit(signalExitCode(name));
      received = name;
      controller.abort(new Interrupted(name));
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  return {
    signal: controller.signal,
    get received() {
      return received;
    },
    close() {
      for (const [name, handler] of handlers) process.off(name, handler);
    },
  };
}

/** Lets the event loop turn once, so a pending signal's handler runs before the caller checks for it. */
export function yieldToSignals(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Throws the signal's {@link Interrupted} reason when it is aborted. */
export function throwIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/** Yields to pending signals, then throws if `signal` is aborted: the check at a block or step boundary. */
export async function checkpointBoundary(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await yieldToSignals();
  throwIfInterrupted(signal);
}

/**
 * Calls `run` with a flag that turns true at the first SIGINT or SIGTERM (a
 * second one exits at once); resolves with its result and the exit status
 * the signal asks for (0 when none came). The long CLI jobs (`offtune tune`,
 * `offtune full-ft`, `offtune pretrain`) stop at their next checkpoint when
 * the flag turns.
 */
export async function withInterrupt<T>(run: (interrupted: () => boolean) => Promise<T>): Promise<{ result: T; exitCode: number }> {
  const listener = listenForInterrupts();
  try {
    const result = await run(() => listener.signal.aborted);
    return { result, exitCode: listener.received ? signalExitCode(listener.received) : 0 };
  } finally {
    listener.close();
  }
}
