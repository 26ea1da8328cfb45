/**
 * A middle block's GradOT scoring and compression cut into parts that do not
 * depend on each other (docs/DISTRIBUTED.md "How a GradOT build uses the
 * cores"): each attention projection (its SVD, DRD scores and compression to
 * the rank the block's budget gives it) and the MLP (SCP scores and
 * pruning to the budget's width). A pool runs the parts on whichever slots
 * are free, so a block's 0.6 s of scoring on OPT-125M is five requests of
 * about 0.1 s, not one that holds a slot while the other idles (at the end
 * of the backward, when only the last blocks' compressions are left).
 *
 * The parts give the same weights and compression note as the whole block
 * in one request: the same functions run on the same inputs
 * (`gradotCompression` with `BlockSettings.parts`), and the notes are merged
 * in the order the whole block's compressors write them.
 *
 * @module
 */
import { isAttention, MLP_PART, mlpSpecs } from "../model/mlp_view.ts";
import type { CompressionNote, ModelHandle, StatsRecord } from "../records/records.ts";
import type { WeightMap } from "../model/types.ts";
import { type BlockJob, type BlockJobValue, blockJobValue, type BlockSettings, type CompressedBlock } from "./block_files.ts";
import { sharedValues, type SharedWeights } from "./shared_weights.ts";

/** The parts of a middle block of `model` under `settings`: its attention linears by name (unless only SCP runs), then `mlp` (unless only DRD runs). */
export function blockParts(model: ModelHandle, settings: BlockSettings): string[] {
  const specs = model.arch.linears(model.cfg);
  return [
    ...(settings.only === "scp" ? [] : specs.filter(isAttention).map((s) => s.name)),
    ...(settings.only === "drd" ? [] : [MLP_PART]),
  ];
}

/** The linears a part covers: an attention linear itself, or the MLP's. */
function partLinears(model: ModelHandle, part: string): string[] {
  if (part !== MLP_PART) return [part];
  const { inputs, output } = mlpSpecs(model.arch.linears(model.cfg));
  return [...inputs, output].map((s) => s.name);
}

/** Whether weight `name` belongs to one of `linears` (`<linear>.<tensor>`). */
const ofLinears = (name: string, linears: readonly string[]) => linears.some((l) => name.startsWith(`${l}.`));

/**
 * Copies `value`'s typed arrays whose buffer is in `seen` (and records the
 * others' buffers there): the parts of one block share factors (q, k and v
 * one `A`), and an array moved to a worker with one part is gone for the
 * next.
 */
function unshared<T>(value: T, seen: Set<ArrayBufferLike>): T {
  if (ArrayBuffer.isView(value)) {
    const view = value as unknown as Float32Array;
    if (seen.has(view.buffer)) return view.slice() as unknown as T;
    seen.add(view.buffer);
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => unshared(v, seen)) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unshared(v, seen)])) as T;
  }
  return value;
}

/**
 * A weight's values as a view of the block's publication `shared` (no copy),
 * for {@link blockJobValue}.
 *
 * @throws Error naming the tensor when the publication lacks one
 */
function publishedValues(shared: SharedWeights): (name: string) => Float32Array {
  const views = new Map(shared.tensors.map((t) => [t.name, sharedValues(shared, t)]));
  return (name) => {
    const view = views.get(name);
    if (!view) throw new Error(`The block's publication has no tensor "${name}"`);
    return view;
  };
}

/**
 * The part jobs of middle block `record`, one per {@link blockParts} in that
 * order, each with the weights and factors of its linears (the MLP's with
 * the channel products): copies of the weights (views of them where the
 * record carries the block's publication on the pool, which must then stay
 * unchanged till the parts are answered), the record's factors (no
 * copies but where two parts share one). The parts' weights leave
 * `record.weights` (disposed: the jobs hold copies or views), its statistics are
 * cleared; what stays is what no part changes (layer norms, and the like).
 */
export function partJobs(record: StatsRecord, model: BlockJob["model"], settings: BlockSettings): Array<{ part: string; job: BlockJobValue }> {
  const seen = new Set<ArrayBufferLike>();
  const valuesOf = record.published && publishedValues(record.published);
  const jobs = blockParts(record.model, settings).map((part) => {
    const linears = partLinears(record.model, part);
    const weights: WeightMap = new Map([...record.weights].filter(([name]) => ofLinears(name, linears)));
    const stats = new Map([...record.stats].filter(([name]) => linears.includes(name)));
    const channelProducts = part === MLP_PART ? record.channelProducts : undefined;
    const subset: StatsRecord = { ...record, weights, stats, channelProducts };
    const job = blockJobValue(subset, model, { ...settings, parts: [part] }, valuesOf);
    return { part, job: { ...job, stats: unshared(job.stats, seen), ...(job.channelProducts ? { channelProducts: unshared(job.channelProducts, seen) } : {}) } };
  });
  for (const { job } of jobs) {
    for (const name of Object.keys(job.weights)) {
      record.weights.get(name)?.dispose();
      record.weights.delete(name);
    }
  }
  record.stats.clear();
  return jobs;
}

/**
 * Puts the compressed parts of a block (in {@link blockParts} order) into
 * `weights` (what {@link partJobs} left) and returns the block's compression
 * note as the whole block's compressors write it: DRD's ranks and ties,
 * then SCP's width and tie.
 */
export function mergeParts(weights: WeightMap, parts: ReadonlyArray<{ part: string; block: CompressedBlock }>): CompressionNote {
  const attention = parts.filter((p) => p.part !== MLP_PART).map((p) => p.block.compression);
  const mlp = parts.find((p) => p.part === MLP_PART)?.block.compression;
  for (const { block } of parts) {
    for (const [name, tensor] of block.weights) weights.set(name, tensor);
  }
  let note: CompressionNote = {};
  if (attention.length > 0) {
    note = { ranks: Object.assign({}, ...attention.map((c) => c.ranks)), ties: { drd: Object.assign({}, ...attention.map((c) => c.ties?.drd)) } };
  }
  if (mlp) note = { ...note, width: mlp.width, ties: { ...note.ties, scp: mlp.ties?.scp } };
  return note;
}

