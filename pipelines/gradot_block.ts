/**
 * `offtune gradot-block`: scores and compresses one GradOT middle block from
 * the `.block` file `build-emulator --queue` wrote, into a `.compressed` file
 * (`runBlockJob` of mod.ts). Workers run it; docs/DISTRIBUTED.md.
 *
 * @module
 */
import { runBlockJob } from "../mod.ts";
import { jobVerbMain } from "./flags.ts";

/** Help text for the verb. */
export const help = `offtune gradot-block --input <file.block> --out <file.compressed> [--backend <name>]

One job of a distributed GradOT build (build-emulator --queue; an offtune
worker runs it): reads a middle block's weights and KFAC factors from
--input, scores GCS, compresses DRD + SCP with the settings the file
carries, and writes the compressed block to --out atomically. An existing
--out is a finished job's output and is kept. See docs/DISTRIBUTED.md.

  --input <file>     the .block file (on shared storage)
  --out <file>       the .compressed file to write
  --backend <name>   auto | tensorflow | wasm | cpu`;

/** CLI entry: 0 once --out holds the compressed block. */
export const main = jobVerbMain("gradot-block", runBlockJob);
