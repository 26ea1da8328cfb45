/**
 * What a Hugging Face checkpoint holds (`offtune inspect`): its
 * architecture, blocks, parameter counts and stored dtypes — checked against
 * the architecture's expected names and shapes without loading any weights
 * (a config that disagrees with the weights is an error, as when a verb opens
 * the checkpoint: docs/GUARANTEES.md "What is verified").
 *
 * @module
 */
import { openCheckpoint, type TensorInfo } from "../io/checkpoint.ts";
import { checkWeightsMatchConfig, resolveModel, storedName } from "./load.ts";

/** What `inspect` reports, also printed as JSON with `--json`. */
export interface CheckpointSummary {
  /** The checkpoint directory. */
  dir: string;
  /** config.json's `model_type`. */
  modelType: string;
  /** Transformer blocks. */
  layers: number;
  /** Hidden width. */
  hidden: number;
  /** Attention heads. */
  heads: number;
  /** Key/value heads (fewer than `heads` with GQA). */
  kvHeads: number;
  /** MLP width. */
  intermediate: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Whether the head shares the embedding matrix. */
  tiedHead: boolean;
  /** Parameter counts: all, outside the blocks (embeddings, norms, head), per block. */
  parameters: { total: number; outer: number; perBlock: number[] };
  /** Tensors per stored dtype. */
  dtypes: Record<string, number>;
  /** The weight files. */
  files: string[];
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Summarises the checkpoint in `dir` from its headers only (no weight is
 * loaded): what `offtune inspect` prints, and what the experiment reads the
 * original middle blocks' parameter count from.
 */
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

/** Renders a {@link CheckpointSummary} as the text `offtune inspect` prints. */
export function formatCheckpointSummary(s: CheckpointSummary): string {
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
