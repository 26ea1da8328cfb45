/**
 * The resumable training state on disk, one format under both pretraining
 * (pipelines/pretrain.ts) and tuning (src/train/tune_package.ts): a
 * safetensors file holding, for every slot of a {@link ParamLayout}, the
 * float32 parameters and AdamW moments (`param/<key>`, `exp_avg/<key>`,
 * `exp_avg_sq/<key>`), and as JSON in one `__metadata__` key a format name,
 * a version and whatever else the caller records (step, run settings …).
 *
 * Writing is not atomic by itself: the callers write to a temporary name and
 * rename (or build the whole directory under one).
 *
 * @module
 */
import { CheckpointError } from "../io/errors.ts";
import { encodeFromF32 } from "../io/safetensors.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors_file.ts";
import type { ParamLayout } from "./params.ts";

/** How a kind of state file is labelled: the metadata key of its JSON, and the format name and version written there. */
export interface StateFormat {
  key: string;
  format: string;
  version: number;
}

/** The flat vectors of a training state, all in one layout: parameters and AdamW's first and second moments. */
export interface StateVectors {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

const PREFIXES = ["param", "exp_avg", "exp_avg_sq"] as const;

/**
 * Writes `vectors` (laid out by `layout`) and the JSON `{ format, version,
 * ...meta }` under `kind.key` to the safetensors file `path`.
 */
export async function writeStateFile(
  path: string,
  layout: ParamLayout,
  vectors: StateVectors,
  kind: StateFormat,
  meta: object,
): Promise<void> {
  const flats = [vectors.params, vectors.m, vectors.v];
  const tensors = PREFIXES.flatMap((prefix, k) =>
    layout.slots.map((slot) => ({
      name: `${prefix}/${slot.key}`,
      dtype: "F32" as const,
      shape: slot.shape,
      bytes: encodeFromF32(flats[k].subarray(slot.offset, slot.offset + slot.size), "F32"),
    }))
  );
  const json = { format: kind.format, version: kind.version, ...meta };
  await writeSafetensors(path, tensors, { [kind.key]: JSON.stringify(json) });
}

/**
 * Reads the state file `path` written by {@link writeStateFile} for
 * `layout`: its JSON (unchecked beyond format and version, typed `M` by the
 * caller) and its vectors.
 *
 * @param owner names what needs the layout in errors (e.g. `"the run"`)
 * @throws CheckpointError naming the file when it cannot be opened, its JSON
 *   is invalid or of another format or version, or it lacks a tensor of the
 *   layout (or holds it in another shape)
 */
export async function readStateFile<M>(
  path: string,
  layout: ParamLayout,
  kind: StateFormat,
  owner: string,
): Promise<StateVectors & { meta: M }> {
  const file = await openSafetensors(path);
  try {
    let meta: { format?: unknown; version?: unknown } | null;
    try {
      meta = JSON.parse(file.header.metadata[kind.key] ?? "null");
    } catch (e) {
      throw new CheckpointError(path, `Cannot resume from "${path}": invalid ${kind.key} metadata`, { cause: e });
    }
    if (meta?.format !== kind.format || meta.version !== kind.version) {
      throw new CheckpointError(path, `Cannot resume from "${path}": not an ${kind.format} v${kind.version} file`);
    }
    const flats: Float32Array[] = [];
    for (const prefix of PREFIXES) {
      const flat = new Float32Array(layout.size);
      for (const slot of layout.slots) {
        const name = `${prefix}/${slot.key}`;
        const entry = file.entry(name);
        if (!entry || entry.shape.join(",") !== slot.shape.join(",")) {
          throw new CheckpointError(
            path,
            `Cannot resume from "${path}": tensor "${name}" ${
              entry ? `has shape [${entry.shape.join(", ")}]` : "is missing"
            }, ${owner} needs [${slot.shape.join(", ")}]`,
          );
        }
        flat.set(await file.readF32(name), slot.offset);
      }
      flats.push(flat);
    }
    return { meta: meta as M, params: flats[0], m: flats[1], v: flats[2] };
  } finally {
    await file.close();
  }
}
