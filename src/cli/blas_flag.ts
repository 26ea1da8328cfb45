/**
 * The CLI's global `--blas openblas|cuda` flag (docs/DISTRIBUTED.md "A CUDA
 * machine"): taken out of the arguments before the verb parses them, and
 * turned into `OFFTUNE_BLAS`, which every verb, worker thread and child
 * process reads.
 *
 * @module
 */
import { type BlasChoice, parseBlasChoice } from "../linalg/blas_choice.ts";

/**
 * `argv` without its `--blas <name>` or `--blas=<name>` (anywhere), and the
 * name given, parsed; throws on an unknown name or a missing value.
 */
export function takeBlasFlag(argv: string[]): { argv: string[]; blas?: BlasChoice } {
  const rest: string[] = [];
  let blas: BlasChoice | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--blas") {
      if (i + 1 >= argv.length) throw new Error("--blas needs a value: openblas or cuda");
      blas = parseBlasChoice(argv[++i], "--blas");
    } else if (arg.startsWith("--blas=")) {
      blas = parseBlasChoice(arg.slice("--blas=".length), "--blas");
    } else {
      rest.push(arg);
    }
  }
  return { argv: rest, blas };
}
