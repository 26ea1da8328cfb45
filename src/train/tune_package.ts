/**
 * Files of a tuning run: the adapter package (docs/METHOD.md §1: what the data
 * owner returns) and, beside its shards, the resumable training state.
 *
 * The package is the format src/model/model_source.ts reads: kind
 * `adapter`, one Arrow shard per tuned block (full weights, or LoRA factors
 * `name.lora_a`/`name.lora_b` with the scale folded into `lora_b`), an
 * `outer` shard only when the embeddings were tuned, and a manifest. Each
 * write builds the whole directory under a temporary name and renames it
 * into place (src/io/manifest.ts), so the directory always holds one
 * consistent checkpoint: shards, manifest and state of the same step.
 *
 * The state, `tune_state.safetensors` (src/train/state_file.ts, as
 * pretraining's), holds float32 parameters and AdamW moments
 * (`param/<key>`, `exp_avg/<key>`, `exp_avg_sq/<key>`) and, as JSON in the
 * `__metadata__` key `offtune.tune_state`, the step and whatever identifies
 * the run. It is written at every epoch but the last: the
 * finished adapter leaves it out, since the moments are running statistics
 * of the private data's gradients and docs/METHOD.md §1 returns weights only.
 *
 * The tuning files are written and read here (the state through
 * state_file.ts); the loop (tune_loop.ts) only calls back.
 *
 * @module
 */
import { join } from "node:path";
import { createPackageWriter, type Manifest, MANIFEST_FORMAT_VERSION } from "../io/manifest.ts";
import { copyTokenizerFiles } from "../io/tokenizer.ts";
import { configSha256, type ShardTensor } from "../io/shard_schema.ts";
import type { ModelHandle } from "../records/records.ts";
import type { AdamWState } from "./adamw.ts";
import type { ParamLayout } from "./params.ts";
import { readStateFile, type StateFormat, writeStateFile } from "./state_file.ts";

/** File name of the training state inside an unfinished adapter package. */
export const TUNE_STATE_FILE = "tune_state.safetensors";
const STATE: StateFormat = { key: "offtune.tune_state", format: "offtune-tune-state", version: 1 };

/** What the state file records besides the vectors. */
export interface SavedTuneState {
  /** Optimizer steps completed. */
  step: number;
  /** Settings that identify the run; a resume must present equal ones. */
  run: Record<string, unknown>;
}

/** The training state to store with a package. */
export interface TuneStateFile extends SavedTuneState {
  layout: ParamLayout;
  params: Float32Array;
  optimizer: AdamWState;
}

/** What {@link writeAdapterPackage} writes. */
export interface AdapterPackage {
  /** The model tuned (its config, split and source hash name the adapter). */
  model: Pick<ModelHandle, "cfg" | "split" | "sourceHash">;
  /** Tuned tensors per part: block index or `"outer"`. */
  parts: Map<number | "outer", ShardTensor[]>;
  /** Adapter method label (`full` or `lora`) and its settings (JSON values). */
  method: string;
  settings: Record<string, unknown>;
  /** Extra manifest fields (task, epochs done, losses …). */
  extra: Record<string, unknown>;
  /** Training state to keep beside the shards (unfinished runs). */
  state?: TuneStateFile;
  /** The tokenizer.json the items were encoded with, carried in the package (docs/SHARDS.md). */
  tokenizer?: string;
}

/**
 * Writes the adapter package `dir` (and its state, if given) atomically,
 * replacing an earlier checkpoint of the run.
 */
export async function writeAdapterPackage(dir: string, p: AdapterPackage): Promise<Manifest> {
  const writer = createPackageWriter(dir);
  try {
    const parts = [...p.parts].sort(([a], [b]) => (a === "outer" ? -1 : b === "outer" ? 1 : a - b));
    for (const [part, tensors] of parts) {
      writer.writeShard(
        {
          block: part,
          role: part === "outer" ? "outer" : "adapter",
          method: p.method,
          settings: p.settings,
          sourceHash: p.model.sourceHash,
          configHash: configSha256(p.model.cfg.raw),
        },
        tensors,
      );
    }
    if (p.state) await writeState(join(writer.temp, TUNE_STATE_FILE), p.state);
    if (p.tokenizer) await copyTokenizerFiles(p.tokenizer, writer.temp);
    return await writer.commit({
      formatVersion: MANIFEST_FORMAT_VERSION,
      kind: "adapter",
      architecture: p.model.cfg.modelType,
      config: p.model.cfg.raw,
      split: p.model.split,
      method: p.method,
      settings: p.settings,
      sourceHash: p.model.sourceHash,
      createdAt: new Date().toISOString(),
      extra: p.extra,
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

async function writeState(path: string, s: TuneStateFile): Promise<void> {
  const vectors = { params: s.params, m: s.optimizer.m, v: s.optimizer.v };
  await writeStateFile(path, s.layout, vectors, STATE, { step: s.step, optimizerStep: s.optimizer.step, run: s.run });
}

/**
 * Reads the training state in package `dir` for the trainable `layout`.
 *
 * @throws CheckpointError naming the file when it is missing, not a tuning
 *   state, or lacks a tensor of the layout (or holds it in another shape)
 */
export async function readTuneState(
  dir: string,
  layout: ParamLayout,
): Promise<SavedTuneState & { params: Float32Array; optimizer: AdamWState }> {
  const { meta, params, m, v } = await readStateFile<SavedTuneState & { optimizerStep: number }>(
    join(dir, TUNE_STATE_FILE),
    layout,
    STATE,
    "the run",
  );
  return { step: meta.step, run: meta.run, params, optimizer: { step: meta.optimizerStep, m, v } };
}

/** How far the tuning run that wrote an adapter package got (its manifest's `extra`). */
export interface AdapterProgress {
  /** False only for a checkpoint of a run that has not finished (written with its state). */
  finished: boolean;
  /** Optimizer steps done and the run's total, when the manifest records them. */
  step?: number;
  totalSteps?: number;
}

/**
 * The progress an adapter manifest records: `offtune tune` writes
 * `extra.finished` (true only on its last checkpoint), `extra.step` and
 * `extra.totalSteps`. An adapter written without them (by the library,
 * in one go) counts as finished.
 */
export function adapterProgress(manifest: Pick<Manifest, "extra">): AdapterProgress {
  const extra = manifest.extra ?? {};
  const count = (v: unknown) => (Number.isSafeInteger(v) ? (v as number) : undefined);
  return { finished: extra.finished !== false, step: count(extra.step), totalSteps: count(extra.totalSteps) };
}

/**
 * Refuses the adapter package `dir` when its run has not finished
 * (docs/GUARANTEES.md "Outputs"): an epoch checkpoint is no adapter to plug
 * in or evaluate unless asked for by name.
 *
 * @throws Error `Adapter "<dir>" at step 16 of 48 is unfinished; …`
 */
export function requireFinishedAdapter(dir: string, manifest: Pick<Manifest, "extra">): void {
  const p = adapterProgress(manifest);
  if (p.finished) return;
  const at = p.step === undefined ? "" : ` at step ${p.step}${p.totalSteps === undefined ? "" : ` of ${p.totalSteps}`}`;
  throw new Error(
    `Adapter "${dir}"${at} is unfinished; finish it with offtune tune --resume, or pass --allow-unfinished to use it anyway`,
  );
}
