/**
 * Worker threads the `offtune` dispatcher starts before a verb's modules
 * load (docs/DISTRIBUTED.md "How a GradOT build uses the cores"): a thread
 * of `build-emulator --workers n` takes about 1.5 s to load its modules,
 * which then overlaps this thread's own loading (about 1.3 s) instead of the
 * build's first blocks. Light on purpose: it loads no tensor code.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { CalibrationThreads } from "../distributed/calibration_threads.ts";

/**
 * The calibration pool's threads of a `build-emulator` command line `argv`
 * that asks for a pool (`--workers n`, n > 1, GradOT, no `--queue`),
 * started now; undefined for any other. The verb checks its flags itself
 * and rejects a wrong command line; whoever started the threads closes them.
 */
export function earlyCalibrationThreads(argv: string[]): CalibrationThreads | undefined {
  if (argv.includes("--help") || argv.includes("-h")) return undefined;
  const options = { workers: { type: "string" }, method: { type: "string" }, queue: { type: "string" } } as const;
  const { values } = parseArgs({ args: argv, options, strict: false, allowPositionals: true });
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 2 || (values.method ?? "gradot") !== "gradot" || values.queue !== undefined) return undefined;
  return new CalibrationThreads(workers);
}
