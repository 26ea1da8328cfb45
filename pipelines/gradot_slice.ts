/**
 * `offtune gradot-slice`: the calibration forward, head and backward of one
 * slice of a queued GradOT build's calibration set, from the `.slice` file
 * `build-emulator --queue` wrote, into a directory of KFAC inputs per middle
 * block and chunk (`runSliceJob` of mod.ts). Workers run it;
 * docs/DISTRIBUTED.md "Calibration slices".
 *
 * @module
 */
import { runSliceJob } from "../mod.ts";
import { jobVerbMain } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune gradot-slice --input <file.slice> --out <dir> [--backend <name>]

One job of a distributed GradOT build (build-emulator --queue; an offtune
worker runs it): runs the calibration forward, the head's loss and the
backward over the whole model, one block at a time, on the sequences of one
calibration slice (--input, which names the model and carries the slice's
tokens and chunk sizes), and writes to --out, each file atomically: the
head chunks' summed losses (loss.msgpack) and, per middle block and chunk,
every linear's KFAC inputs x and output gradients (block-<i>-chunk-<k>.kfac).
The building process sums them in chunk order. Run again, it rewrites the
same bytes. See docs/DISTRIBUTED.md "Calibration slices".

  --input <file>     the .slice file (on shared storage)
  --out <dir>        the directory to write (on shared storage)
  --backend <name>   auto | tensorflow | wasm | cpu`;

/** CLI entry: 0 once --out holds the slice's files. */
export const main = jobVerbMain("gradot-slice", runSliceJob);
