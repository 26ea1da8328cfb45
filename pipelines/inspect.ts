/**
 * `offtune inspect <checkpoint>`: what a Hugging Face checkpoint holds — its
 * architecture, blocks, parameter counts and stored dtypes — checked against
 * the architecture's expected names and shapes without loading any weights
 * (a config that disagrees with the weights is an error, as when a verb opens
 * the checkpoint: docs/GUARANTEES.md "What is verified").
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openCheckpoint, type TensorInfo } from "../src/io/checkpoint.ts";
import { checkWeightsMatchConfig, resolveModel, storedName } from "../src/model/load.ts";

/** Help text for the verb. */
export const help = `offtune inspect <checkpoint-dir> [--json]

Prints the architecture, block count, widths, parameter counts (embeddings,
per block, head) and stored dtypes of a Hugging Face checkpoint
(config.json + model.safetensors or a sharded model.safetensors.index.json).
Reads only headers: no weight is loaded.

  --json   print the summary as JSON instead of text`;

/** What `inspect` reports, also printed as JSON with `--json`. */
export interface CheckpointSummary {
  dir: string;
  modelType: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocabSize: number;
  tiedHead: boolean;
  parameters: { total: number; outer: number; perBlock: number[] };
  dtypes: Record<string, number>;
  files: string[];
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Summarises the checkpoint in `dir` (headers only). */
export async function inspectCheckpoint(dir: string): Promise<CheckpointSummary> {
  const reader = await openCheckpoint(dir, { scanNonFinite: false });
  try {
    const { arch, cfg } = resolveModel(reader);
    checkWeightsMatchConfig(reader, arch, cfg);
    const byName = new Map<string, TensorInfo>(reader.tensors().map((t) => [t.name, t]));
    const perBlock: number[] = [];
    const claimed = new Set<string>();
    for (let i = 0; i < cfg.layers; i++) {
      const prefix = arch.blockPrefix(i);
      let params = 0;
      for (const local of arch.blockShapes(cfg).keys()) {
        const info = reader.info(storedName(reader, arch, prefix + local) ?? prefix + local);
        params += count(info.shape);
        claimed.add(info.name);
      }
      perBlock.push(params);
    }
    let outer = 0;
    for (const [name, info] of byName) {
      if (!claimed.has(name)) outer += count(info.shape);
    }
    const dtypes: Record<string, number> = {};
    for (const info of byName.values()) dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
    return {
      dir,
      modelType: cfg.modelType,
      layers: cfg.layers,
      hidden: cfg.hidden,
      heads: cfg.heads,
      kvHeads: cfg.kvHeads,
      intermediate: cfg.intermediate,
      vocabSize: cfg.vocabSize,
      tiedHead: cfg.tiedHead,
      parameters: {
        total: outer + perBlock.reduce((a, b) => a + b, 0),
        outer,
        perBlock,
      },
      dtypes,
      files: [...new Set([...byName.values()].map((t) => t.file))],
    };
  } finally {
    await reader.close();
  }
}

function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** Renders a summary as the text `inspect` prints. */
export function formatSummary(s: CheckpointSummary): string {
  const blocks = s.parameters.perBlock;
  const uniform = blocks.every((p) => p === blocks[0]);
  const blockLine = uniform
    ? `${s.layers} x ${human(blocks[0] ?? 0)} (${blocks[0] ?? 0})`
    : blocks.map((p, i) => `${i}:${human(p)}`).join(" ");
  return [
    `checkpoint    ${s.dir}`,
    `architecture  ${s.modelType}`,
    `blocks        ${s.layers}`,
    `widths        hidden ${s.hidden}, heads ${s.heads} (kv ${s.kvHeads}), ` +
    `mlp ${s.intermediate}, vocab ${s.vocabSize}, head ${s.tiedHead ? "tied" : "separate"}`,
    `parameters    ${human(s.parameters.total)} (${s.parameters.total}) total`,
    `  outer       ${human(s.parameters.outer)} (${s.parameters.outer}) embeddings, norms, head`,
    `  per block   ${blockLine}`,
    `dtypes        ${Object.entries(s.dtypes).map(([d, n]) => `${d}: ${n} tensors`).join(", ")}`,
    `files         ${s.files.join(", ")}`,
  ].join("\n");
}

/** CLI entry: `offtune inspect <dir> [--json]`. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new Error(`Expected one checkpoint directory, got ${positionals.length}`);
  }
  const summary = await inspectCheckpoint(positionals[0]);
  console.log(values.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
  return 0;
}
