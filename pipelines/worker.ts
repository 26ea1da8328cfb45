/**
 * `offtune worker`: serves the offtune queue on Redis (`serveQueue` of
 * mod.ts), running each job as a verb process, until SIGINT or SIGTERM.
 * docs/DISTRIBUTED.md "Many machines".
 *
 * @module
 */
import process from "node:process";
import { serveQueue } from "../mod.ts";
import { parseVerbFlags, positiveIntFlag } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune worker --queue redis://host:port [--storage <dir>] [--concurrency <n>]

Serves the jobs that experiment --queue and build-emulator --queue submit
to the queue at --queue (Redis; BullMQ), each as an offtune verb process,
--concurrency at a time, until SIGINT or SIGTERM: an experiment's steps, and
a GradOT build's calibration slices (gradot-slice: the forward, loss and
backward over the whole model on one slice of the calibration set; one
block resident, its activations on this machine's temporary directory) and
middle-block compressions (gradot-block). Every machine must see the same
shared storage at the same path: the jobs name their files there.
On SIGINT/SIGTERM the worker takes no new job; an idle worker exits at
once, a busy one passes the signal on to its running verbs, which stop at
their next checkpoint (docs/GUARANTEES.md "Interrupts"), and exits: their
jobs are released (their lock lapses) and another worker continues them
from the checkpoint. A worker that dies holding a job is noticed by the
other workers after --lock-ms; the job is run again elsewhere. See
docs/DISTRIBUTED.md.

  --queue <url>          redis://[user:password@]host:port[/db]
  --storage <dir>        the shared directory (default: the current one); job
                         claims are written to <dir>/.offtune-queue/claims
  --concurrency <n>      jobs at once (default 1; each is one process)
  --lock-ms <n>          a job's lock lifetime in ms: how soon a dead
                         worker's job is taken over (default 30000)`;

const FLAGS = {
  queue: { type: "string" },
  storage: { type: "string", default: "." },
  concurrency: { type: "string" },
  "lock-ms": { type: "string" },
} as const;

/** CLI entry: serves until SIGINT or SIGTERM; returns 0 when idle then (a busy worker exits with the signal's status, src/cli/run_verb.ts). */
export async function main(argv: string[]): Promise<number> {
  const flags = parseVerbFlags(argv, FLAGS, "worker", ["queue"]);
  // Listening before "serving" is printed: a signal sent on seeing it must find the handler.
  let stop: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onInt = () => stop("SIGINT");
  const onTerm = () => stop("SIGTERM");
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  let worker;
  try {
    worker = await serveQueue({
      queue: flags.queue,
      storage: flags.storage,
      concurrency: positiveIntFlag(flags.concurrency, "concurrency"),
      lockMs: positiveIntFlag(flags["lock-ms"], "lock-ms"),
      onError: (e) => console.error(`worker: ${e.message}`),
    });
  } catch (e) {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    throw e;
  }
  console.error(`worker: serving ${flags.queue} (storage ${flags.storage}, pid ${process.pid})`);
  const signal = await stopped;
  console.error(`worker: ${signal}: stopping`);
  await worker.stop();
  return 0;
}
