/**
 * Ctrl-C for long CLI jobs (`offtune tune`, `offtune full-ft`): the first
 * SIGINT asks the job to stop at its next checkpoint, a second one exits at
 * once.
 *
 * @module
 */
import process from "node:process";

/** Calls `run` with a flag that turns true at the first Ctrl-C; a second Ctrl-C exits at once (code 130). */
export async function withInterrupt<T>(run: (interrupted: () => boolean) => Promise<T>): Promise<T> {
  let interrupted = false;
  const onInterrupt = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
  };
  process.on("SIGINT", onInterrupt);
  try {
    return await run(() => interrupted);
  } finally {
    process.off("SIGINT", onInterrupt);
  }
}
