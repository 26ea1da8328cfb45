/**
 * `offtune plot-training --log <log.jsonl> --out <curve.svg>`: the loss curve
 * of a pretraining run (fixtures/README shows the shipped models' curves).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { chainTrainingLogs, layerDropCurveSvg, parseTrainingLog, trainingCurveSvg, writeFileAtomic } from "../mod.ts";

/** Help text for the verb. */
export const help = `offtune plot-training --log <log.jsonl> [--log <continued.jsonl> ...] --out <file.svg>
                      [--title <text>] [--smooth <n>] [--layerdrop-out <file.svg>]

Draws train loss (smoothed over --smooth steps, default 10) and validation
loss against tokens seen, from the log.jsonl that offtune pretrain writes.
--layerdrop-out also draws the validation perplexity of the model and of its
half-middle LayerDrop at the run's tracking steps (pretrain --track-every).
More than one --log draws a run and its continuations (pretrain --init), in
the order given, as one curve: each later log's steps and tokens follow on
from the log before it.`;

/** CLI entry. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      log: { type: "string", multiple: true },
      out: { type: "string" },
      "layerdrop-out": { type: "string" },
      title: { type: "string" },
      smooth: { type: "string", default: "10" },
    },
  });
  const logPaths = values.log ?? [];
  if (logPaths.length === 0 || !values.out) throw new Error("--log and --out are required (see offtune plot-training --help)");
  const logs = await Promise.all(logPaths.map(async (source) => {
    const text = await readFile(source, "utf8").catch(() => {
      throw new Error(`Cannot read training log "${source}": file does not exist`);
    });
    return { lines: parseTrainingLog(text, source), source };
  }));
  const lines = chainTrainingLogs(logs);
  const named = logPaths.join(" + ");
  const svg = trainingCurveSvg(lines, values.title ?? `Pretraining loss (${named})`, Number(values.smooth));
  await writeFileAtomic(values.out, new TextEncoder().encode(svg));
  console.log(`wrote ${values.out} (${lines.length} steps)`);
  const layerDropOut = values["layerdrop-out"];
  if (layerDropOut) {
    const layerDropSvg = layerDropCurveSvg(lines, `Validation perplexity: model vs half-middle LayerDrop (${named})`);
    await writeFileAtomic(layerDropOut, new TextEncoder().encode(layerDropSvg));
    console.log(`wrote ${layerDropOut}`);
  }
  return 0;
}
