/**
 * `offtune plot-training --log <log.jsonl> --out <curve.svg>`: the loss curve
 * of a pretraining run (fixtures/README shows the shipped models' curves).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { parseArgs } from "node:util";
import { layerDropCurveSvg, parseTrainingLog, trainingCurveSvg } from "../src/report/training_curve.ts";

/** Help text for the verb. */
export const help = `offtune plot-training --log <log.jsonl> --out <file.svg> [--title <text>] [--smooth <n>]
                      [--layerdrop-out <file.svg>]

Draws train loss (smoothed over --smooth steps, default 10) and validation
loss against tokens seen, from the log.jsonl that offtune pretrain writes.
--layerdrop-out also draws the validation perplexity of the model and of its
half-middle LayerDrop at the run's tracking steps (pretrain --track-every).`;

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      log: { type: "string" },
      out: { type: "string" },
      "layerdrop-out": { type: "string" },
      title: { type: "string" },
      smooth: { type: "string", default: "10" },
    },
  });
  if (!values.log || !values.out) throw new Error("--log and --out are required (see offtune plot-training --help)");
  const text = await readFile(values.log, "utf8").catch(() => {
    throw new Error(`Cannot read training log "${values.log}": file does not exist`);
  });
  const lines = parseTrainingLog(text, values.log);
  const svg = trainingCurveSvg(lines, values.title ?? `Pretraining loss (${values.log})`, Number(values.smooth));
  await writeFileAtomic(values.out, new TextEncoder().encode(svg));
  console.log(`wrote ${values.out} (${lines.length} steps)`);
  const layerDropOut = values["layerdrop-out"];
  if (layerDropOut) {
    await writeFile(layerDropOut, layerDropCurveSvg(lines, `Validation perplexity: model vs half-middle LayerDrop (${values.log})`));
    console.log(`wrote ${layerDropOut}`);
  }
  return 0;
}
