/**
 * Hugging Face checkpoints <-> kernel-layout {@link WeightMap}s (docs/DESIGN.md
 * "Models": weights load from HF layouts, lazily per block; nanoGPT's loader
 * with visible transposes and asserts).
 *
 * Loading reads one block (or the outer weights) through a
 * {@link CheckpointReader}, checks every expected name and shape against the
 * architecture's `blockShapes`/`outerShapes` before reading any data, and
 * transposes the weights HF stores `[out, in]` into `[in, out]`.
 * {@link toHfTensors} is the inverse, for {@link saveCheckpoint}.
 *
 * @module
 */
import { join } from "node:path";
import type { CheckpointReader, TensorToSave } from "../io/checkpoint.ts";
import { CheckpointError } from "../io/errors.ts";
import { filledTensor } from "../tensor/heap_view.ts";
import { everyBlock } from "../records/records.ts";
import { architectureFor } from "./registry.ts";
import { formatShape, sameShape } from "./shapes.ts";
import type { StreamedVocabulary } from "../records/records.ts";
import type { Architecture, ModelConfig, WeightMap } from "./types.ts";
import type { VocabularyRows } from "./vocabulary.ts";

/** Row-major `[rows, cols]` -> `[cols, rows]`. */
function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  transposeRowsInto(data, 0, rows, cols, out);
  return out;
}

/**
 * Writes rows `[from, from + n)` of a row-major `[rows, cols]` matrix, given
 * as `block` `[n, cols]`, into `out` as columns of the transposed
 * `[cols, rows]`: column by column, so each write run is n contiguous values
 * and the block stays in cache while it is read with stride `cols`.
 */
function transposeRowsInto(block: Float32Array, from: number, rows: number, cols: number, out: Float32Array): void {
  const n = block.length / cols;
  for (let c = 0; c < cols; c++) {
    const base = c * rows + from;
    for (let r = 0; r < n; r++) out[base + r] = block[r * cols + c];
  }
}

/** Values per row block when a tensor is read into its tensor: small enough to stay in cache. */
const LOAD_BLOCK_VALUES = 1 << 16;

/**
 * Reads checkpoint tensor `stored` (HF layout; `[out, in]` when `transposed`)
 * row block by row block straight into `out`, in kernel layout: no
 * whole-tensor intermediate (file bytes, decoded or transposed copy) is
 * allocated, so a load costs one pass over the values.
 */
function readKernelInto(reader: CheckpointReader, stored: string, hfShape: number[], transposed: boolean, out: Float32Array): void {
  const rows = hfShape[0] ?? 1;
  const cols = out.length / Math.max(1, rows);
  const step = Math.max(1, Math.floor(LOAD_BLOCK_VALUES / Math.max(1, cols)));
  const buffer = new Float32Array(Math.min(rows, step) * cols);
  for (let from = 0; from < rows; from += step) {
    const block = reader.readRowsSync(stored, from, Math.min(step, rows - from), buffer); // [n, cols]
    if (transposed) transposeRowsInto(block, from, rows, cols, out);
    else out.set(block, from * cols);
  }
}

/**
 * The architecture and parsed config of an open checkpoint, from its
 * config.json `model_type`.
 *
 * @throws CheckpointError naming config.json when `model_type` is missing or
 *   unknown, or the config is invalid or unsupported
 */
export function resolveModel(reader: CheckpointReader): { arch: Architecture; cfg: ModelConfig } {
  const path = join(reader.dir, "config.json");
  try {
    const type = reader.config.model_type;
    if (typeof type !== "string") throw new Error(`missing "model_type" in "${path}"`);
    const arch = architectureFor(type, path);
    return { arch, cfg: arch.parseConfig(reader.config) };
  } catch (e) {
    throw new CheckpointError(path, `Cannot load model "${reader.dir}": ${(e as Error).message}`, { cause: e });
  }
}

const namesOf = new WeakMap<CheckpointReader, Set<string>>();

/**
 * The name `name` is stored under in the checkpoint: itself, or without the
 * architecture's base-model prefix (GPT-2 files with or without `transformer.`).
 */
export function storedName(reader: CheckpointReader, arch: Architecture, name: string): string | undefined {
  let names = namesOf.get(reader);
  if (!names) {
    names = new Set(reader.tensors().map((t) => t.name));
    namesOf.set(reader, names);
  }
  if (names.has(name)) return name;
  const base = arch.basePrefix;
  if (base && name.startsWith(base) && names.has(name.slice(base.length))) return name.slice(base.length);
  return undefined;
}

/** Where each expected tensor of a block (or the outer part) is stored and how, checked against the file's headers. */
function planNamed(
  reader: CheckpointReader,
  arch: Architecture,
  shapes: Map<string, number[]>,
  prefix: string,
  what: string,
) {
  return [...shapes].map(([local, shape]) => {
    const full = prefix + local;
    const stored = storedName(reader, arch, full);
    if (stored === undefined) {
      throw new CheckpointError(reader.dir, `Cannot load ${what} from "${reader.dir}": tensor "${full}" is missing`);
    }
    const info = reader.info(stored);
    const transposed = arch.storedTransposed(local);
    const hfShape = transposed ? [...shape].reverse() : shape;
    if (!sameShape(info.shape, hfShape)) {
      throw new CheckpointError(
        info.file,
        `Cannot load "${stored}" from "${info.file}": config.json implies shape ${formatShape(hfShape)}` +
          `${transposed ? " ([out, in])" : ""}, the file has ${formatShape(info.shape)}`,
      );
    }
    return { local, stored, shape, hfShape, transposed };
  });
}

function loadNamed(
  reader: CheckpointReader,
  arch: Architecture,
  shapes: Map<string, number[]>,
  prefix: string,
  what: string,
): WeightMap {
  const plan = planNamed(reader, arch, shapes, prefix, what);
  const weights: WeightMap = new Map();
  try {
    for (const { local, stored, shape, hfShape, transposed } of plan) {
      weights.set(local, filledTensor(shape, (out) => readKernelInto(reader, stored, hfShape, transposed, out)));
    }
  } catch (e) {
    for (const t of weights.values()) t.dispose();
    throw e;
  }
  return weights;
}

/**
 * The block index a stored tensor name belongs to (with or without the
 * architecture's base prefix), or undefined for a non-block tensor.
 */
function blockIndexOf(arch: Architecture, name: string): number | undefined {
  const marker = "987654321";
  const [head, tail] = arch.blockPrefix(Number(marker)).split(marker);
  const base = arch.basePrefix ?? "";
  const full = base && !name.startsWith(base) ? base + name : name;
  if (!full.startsWith(head)) return undefined;
  const match = /^(0|[1-9]\d*)/.exec(full.slice(head.length));
  if (!match || !full.startsWith(tail, head.length + match[1].length)) return undefined;
  return Number(match[1]);
}

/**
 * Checks that a checkpoint's weights are the ones its config.json describes
 * (docs/GUARANTEES.md "What is verified"), from the headers alone: every
 * tensor of every block `0..L-1` and of the outer part is present with the
 * shape the config implies, and no tensor belongs to a block beyond `L`. A
 * config whose `num_hidden_layers` is too small would otherwise silently
 * ignore the last blocks, and one whose widths disagree would fail deep in
 * a forward pass.
 *
 * @throws CheckpointError naming the file and the disagreement: a missing
 *   tensor, a shape (tensor and both shapes), or a block beyond the config
 */
export function checkWeightsMatchConfig(reader: CheckpointReader, arch: Architecture, cfg: ModelConfig): void {
  const config = join(reader.dir, "config.json");
  const declared = `Checkpoint "${reader.dir}" disagrees with "${config}": the config declares ${cfg.layers} blocks (0..${cfg.layers - 1})`;
  const stored = new Set(reader.tensors().map((t) => blockIndexOf(arch, t.name)));
  const absent = everyBlock(cfg.layers).filter((i) => !stored.has(i));
  if (absent.length > 0) {
    throw new CheckpointError(config, `${declared}, but the weights hold no tensor of block${absent.length > 1 ? "s" : ""} ${absent.join(", ")}`);
  }
  const beyond = reader.tensors().filter((t) => (blockIndexOf(arch, t.name) ?? -1) >= cfg.layers);
  if (beyond.length > 0) {
    const blocks = [...new Set(beyond.map((t) => blockIndexOf(arch, t.name)!))].sort((a, b) => a - b);
    throw new CheckpointError(
      config,
      `${declared}, but "${beyond[0].file}" holds block${blocks.length > 1 ? "s" : ""} ${blocks.join(", ")} (e.g. tensor "${beyond[0].name}")`,
    );
  }
  planNamed(reader, arch, arch.outerShapes(cfg), "", "the outer weights");
  for (let i = 0; i < cfg.layers; i++) planNamed(reader, arch, arch.blockShapes(cfg), arch.blockPrefix(i), `block ${i}`);
}

/**
 * Checks that the checkpoint stores no tensor besides the weights its config
 * implies (docs/GUARANTEES.md "What is verified"): the stricter check of
 * `pretrain --init`, which must carry every stored weight into the run. An
 * untied `lm_head.weight` beside a config with `tie_word_embeddings`, or a
 * stray buffer, would otherwise be dropped without a word.
 *
 * @throws CheckpointError naming the weights file and the first such tensor
 */
export function checkNoOtherTensors(reader: CheckpointReader, arch: Architecture, cfg: ModelConfig): void {
  const expected = [
    ...arch.outerShapes(cfg).keys(),
    ...everyBlock(cfg.layers).flatMap((i) => [...arch.blockShapes(cfg).keys()].map((local) => arch.blockPrefix(i) + local)),
  ];
  const claimed = new Set(expected.map((name) => storedName(reader, arch, name)));
  const other = reader.tensors().filter((t) => !claimed.has(t.name));
  if (other.length > 0) {
    throw new CheckpointError(
      other[0].file,
      `Checkpoint "${reader.dir}" holds ${other.length} tensor${other.length > 1 ? "s" : ""} its config.json does not name ` +
        `(e.g. "${other[0].name}" in "${other[0].file}")`,
    );
  }
}

/**
 * Block `i`'s weights in kernel layout, named without the block prefix.
 *
 * @throws CheckpointError naming the checkpoint (missing tensor) or the
 *   weights file, tensor and both shapes (shape mismatch)
 */
export async function loadBlockWeights(
  reader: CheckpointReader,
  arch: Architecture,
  cfg: ModelConfig,
  i: number,
): Promise<WeightMap> {
  if (!Number.isInteger(i) || i < 0 || i >= cfg.layers) {
    throw new RangeError(`Block index ${i} is outside 0..${cfg.layers - 1}`);
  }
  return loadNamed(reader, arch, arch.blockShapes(cfg), arch.blockPrefix(i), `block ${i}`);
}

/**
 * The non-block weights (embeddings, final norm, untied head) by HF name, in
 * kernel layout; `except` names weights to leave out (the vocabulary
 * matrices of a streamed vocabulary).
 */
export async function loadOuterWeights(
  reader: CheckpointReader,
  arch: Architecture,
  cfg: ModelConfig,
  except: readonly string[] = [],
): Promise<WeightMap> {
  const shapes = arch.outerShapes(cfg);
  for (const name of except) shapes.delete(name);
  return loadNamed(reader, arch, shapes, "", "the outer weights");
}

/**
 * The vocabulary matrices of the checkpoint as rows read on demand
 * (`ModelHandle.vocabulary`); each is checked to be stored `[V, d]`.
 *
 * @throws CheckpointError naming the checkpoint (missing) or the file (shape)
 */
export function vocabularyRows(reader: CheckpointReader, arch: Architecture, cfg: ModelConfig): StreamedVocabulary {
  const rowsOf = (name: string): VocabularyRows => {
    const stored = storedName(reader, arch, name);
    if (stored === undefined) {
      throw new CheckpointError(reader.dir, `Cannot load the outer weights from "${reader.dir}": tensor "${name}" is missing`);
    }
    const info = reader.info(stored);
    const expected = [cfg.vocabSize, cfg.hidden];
    if (!sameShape(info.shape, expected)) {
      throw new CheckpointError(
        info.file,
        `Cannot load "${stored}" from "${info.file}": config.json implies shape ${formatShape(expected)}, the file has ${formatShape(info.shape)}`,
      );
    }
    return { name, rows: cfg.vocabSize, width: cfg.hidden, read: (start, count, out) => reader.readRowsSync(stored, start, count, out) };
  };
  const names = arch.vocabularyNames(cfg);
  const embedding = rowsOf(names.embedding);
  return { embedding, head: names.head === names.embedding ? embedding : rowsOf(names.head) };
}

/**
 * Block `part`'s (or the outer) weights as HF-named, HF-layout tensors for
 * {@link saveCheckpoint}: the inverse of the loaders. The data of an
 * untransposed tensor may share the tensor's storage: read it, don't mutate it.
 *
 * @throws Error when a weight is missing, unexpected (DRD factors have no HF
 *   layout) or of another shape than config.json implies (e.g. SCP-pruned)
 */
export function toHfTensors(
  arch: Architecture,
  cfg: ModelConfig,
  part: number | "outer",
  weights: WeightMap,
): TensorToSave[] {
  const outer = part === "outer";
  const shapes = outer ? arch.outerShapes(cfg) : arch.blockShapes(cfg);
  const prefix = outer ? "" : arch.blockPrefix(part);
  const what = outer ? "the outer weights" : `block ${part}`;
  const fail = (problem: string) => new Error(`Cannot save ${what} in Hugging Face layout: ${problem}`);
  for (const name of weights.keys()) {
    if (!shapes.has(name)) throw fail(`unexpected weight "${name}" (only uncompressed ${cfg.modelType} weights fit)`);
  }
  return [...shapes].map(([name, shape]) => {
    const t = weights.get(name);
    if (!t) throw fail(`weight "${name}" is missing`);
    if (!sameShape(t.shape, shape)) {
      throw fail(`weight "${name}" has shape ${formatShape(t.shape)}, config.json implies ${formatShape(shape)}`);
    }
    if (t.dtype !== "float32") throw fail(`weight "${name}" is ${t.dtype}, not float32`);
    const data = t.dataSync() as Float32Array;
    return arch.storedTransposed(name)
      ? { name: prefix + name, shape: [shape[1], shape[0]], data: transpose2d(data, shape[0], shape[1]) }
      : { name: prefix + name, shape: [...shape], data };
  });
}
