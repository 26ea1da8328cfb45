/**
 * The resumable state of a Full FT run (pipelines/full_ft.ts): written
 * beside the output checkpoint as `<out>.full-ft-state.safetensors` at the
 * end of every epoch but the last (and when a signal stops the run), read by
 * `offtune full-ft --resume`, removed once the tuned model is written
 * (docs/GUARANTEES.md "What resumes"). Same format as the other training
 * states (src/train/state_file.ts): parameters and AdamW moments, with the
 * step, the run's identity and the loss log as JSON in the `__metadata__`
 * key `offtune.full_ft_state`.
 *
 * @module
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { siblingName } from "../io/atomic.ts";
import type { AdamWState } from "./adamw.ts";
import type { ParamLayout } from "./params.ts";
import { readStateFile, type StateFormat, writeStateFile } from "./state_file.ts";

const STATE: StateFormat = { key: "offtune.full_ft_state", format: "offtune-full-ft-state", version: 1 };

/** The state file of the Full FT run writing checkpoint `out`. */
export function fullTuneStatePath(out: string): string {
  return `${out.replace(/\/+$/, "")}.full-ft-state.safetensors`;
}

/** What the state file records besides the vectors. */
export interface SavedFullTune {
  /** Optimizer steps completed. */
  step: number;
  /** Settings that identify the run; a resume must present equal ones. */
  run: Record<string, unknown>;
  /** The loss log so far (src/train/tune.ts). */
  log: { epochLoss: number[]; partialSum: number; partialSteps: number };
}

/** Writes the state to `path` atomically (a temporary sibling named with the pid, src/io/atomic.ts, then a rename). */
export async function writeFullTuneState(
  path: string,
  layout: ParamLayout,
  s: SavedFullTune & { params: Float32Array; optimizer: AdamWState },
): Promise<void> {
  const temp = siblingName(path, "tmp");
  try {
    // The state lies beside an output whose parent the output's own transaction creates only at the end.
    await mkdir(dirname(path), { recursive: true });
    await writeStateFile(temp, layout, { params: s.params, m: s.optimizer.m, v: s.optimizer.v }, STATE, {
      step: s.step,
      optimizerStep: s.optimizer.step,
      run: s.run,
      log: s.log,
    });
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}

/**
 * Reads the state at `path` for the trainable `layout`.
 *
 * @throws CheckpointError naming the file when it is missing, of another
 *   format, or lacks a tensor of the layout
 */
export async function readFullTuneState(
  path: string,
  layout: ParamLayout,
): Promise<SavedFullTune & { params: Float32Array; optimizer: AdamWState }> {
  const { meta, params, m, v } = await readStateFile<SavedFullTune & { optimizerStep: number }>(path, layout, STATE, "the run");
  return { step: meta.step, run: meta.run, log: meta.log, params, optimizer: { step: meta.optimizerStep, m, v } };
}
