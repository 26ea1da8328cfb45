/**
 * Checks of a package against the model it is used with (docs/GUARANTEES.md
 * "What is verified"): its shards' tensors, as the verified manifest lists
 * them (`verifyPackage` has compared the listing with each shard's header),
 * must have the shapes the model's config implies, every block must be one
 * the model has, and an adapter must hold exactly the model's adapter
 * blocks. Without these, a shard of another width fails deep in a forward
 * pass with a broadcast error, and an adapter missing a block plugs in as a
 * partial adapter (or as the bare model) without a word.
 *
 * @module
 */
import { join } from "node:path";
import { CheckpointError } from "../io/errors.ts";
import { type Manifest, MANIFEST_FILE, type ManifestShard } from "../io/manifest.ts";
import { HARMONIZER_WEIGHTS, harmonizerShapes } from "./harmonizer.ts";
import { formatShape, sameShape } from "./shapes.ts";
import type { Architecture, ModelConfig } from "./types.ts";
import { type AdapterSplit, blockRole, everyBlock } from "../records/records.ts";

/** A factor of a linear `name.weight` `[in, out]`: LoRA's `[in, r]`·`[r, out]`, or DRD's `weight_u`·`weight_v`. */
const FACTOR = /^(.*)\.(lora_a|lora_b|weight_u|weight_v)$/;

/** Whether a stored dimension fits the one the config implies; SCP prunes the MLP width of middle blocks. */
function dimFits(stored: number, expected: number, cfg: ModelConfig, pruned: boolean): boolean {
  return stored === expected || (pruned && expected === cfg.intermediate && stored > 0 && stored < expected);
}

/**
 * Why tensor `name` of `shape` cannot be a weight of the part whose expected
 * weights are `shapes`, or undefined: the config's shape (MLP width pruned
 * in middle blocks), or a factor pair's outer dimensions.
 */
function tensorProblem(
  name: string,
  shape: readonly number[],
  shapes: Map<string, number[]>,
  cfg: ModelConfig,
  middle: boolean,
  against: string,
): string | undefined {
  const expected = shapes.get(name);
  if (expected) {
    const fits = shape.length === expected.length && shape.every((d, i) => dimFits(d, expected[i], cfg, middle));
    return fits ? undefined : `tensor "${name}" has shape ${formatShape(shape)}, but ${against} implies ${formatShape(expected)}`;
  }
  const factor = FACTOR.exec(name);
  const linear = factor && shapes.get(`${factor[1]}.weight`);
  if (!factor || !linear || linear.length !== 2) return `holds tensor "${name}", which ${against} has no weight for`;
  const first = factor[2] === "lora_a" || factor[2] === "weight_u";
  const [dim, want] = first ? [shape[0], linear[0]] : [shape[1], linear[1]];
  if (shape.length !== 2 || !dimFits(dim, want, cfg, middle)) {
    const implied = first ? `[${linear[0]}, r]` : `[r, ${linear[1]}]`;
    return `tensor "${name}" has shape ${formatShape(shape)}, but ${against} implies ${implied} for a factor of "${factor[1]}.weight" ${formatShape(linear)}`;
  }
  return undefined;
}

/** Why the factor pairs of a shard disagree on their inner rank, or undefined. */
function rankProblem(shard: ManifestShard): string | undefined {
  const byName = new Map(shard.tensors.map((t) => [t.name, t.shape]));
  for (const [first, second] of [["lora_a", "lora_b"], ["weight_u", "weight_v"]]) {
    for (const [name, a] of byName) {
      if (!name.endsWith(`.${first}`)) continue;
      const partner = `${name.slice(0, -first.length)}${second}`;
      const b = byName.get(partner);
      if (b && a[1] !== b[0]) return `tensors "${name}" ${formatShape(a)} and "${partner}" ${formatShape(b)} disagree on their rank`;
    }
  }
  return undefined;
}

/**
 * Why a harmonizer shard (one holding `HARMONIZER_WEIGHTS.downWeight`,
 * docs/SHARDS.md "Harmonizer shards") is malformed, or undefined: it must
 * be a middle block holding exactly the harmonizer's tensors, of the
 * shapes `harmonizerShapes` gives for the config's width and its rank.
 */
function harmonizerProblem(shard: ManifestShard, cfg: ModelConfig, against: string): string | undefined {
  const down = shard.tensors.find((t) => t.name === HARMONIZER_WEIGHTS.downWeight)!;
  if (shard.role !== "middle") return `holds a harmonizer as block ${shard.block}, which is ${shard.role}: only middle blocks are replaced`;
  const rank = down.shape[1];
  const expected = harmonizerShapes(cfg.hidden, rank);
  const held = new Map(shard.tensors.map((t) => [t.name, t.shape]));
  for (const [name, shape] of expected) {
    const got = held.get(name);
    if (!got) return `holds a harmonizer without tensor "${name}"`;
    if (!sameShape(got, shape)) return `tensor "${name}" has shape ${formatShape(got)}, but a harmonizer of rank ${rank} for ${against} has ${formatShape(shape)}`;
  }
  const extra = [...held.keys()].find((name) => !expected.has(name));
  return extra === undefined ? undefined : `holds a harmonizer and tensor "${extra}", which a harmonizer has no weight for`;
}

/**
 * Checks every shard of a package against the architecture and config it
 * is used with: a block the model has, and tensors of the shapes the config
 * implies (see {@link tensorProblem}; middle blocks may be compressed).
 *
 * @param against how messages name the config, e.g. `the model "fixtures/tiny"`
 * @throws CheckpointError naming the shard file, the tensor and both shapes
 */
export function checkPackageShapes(dir: string, manifest: Manifest, arch: Architecture, cfg: ModelConfig, against: string): void {
  for (const shard of manifest.shards) {
    const path = join(dir, shard.file);
    if (shard.block !== "outer" && shard.block >= cfg.layers) {
      throw new CheckpointError(
        path,
        `Package "${dir}" has a shard for block ${shard.block} ("${shard.file}"), but ${against} has blocks 0..${cfg.layers - 1}`,
      );
    }
    if (shard.block !== "outer" && shard.tensors.some((t) => t.name === HARMONIZER_WEIGHTS.downWeight)) {
      const problem = harmonizerProblem(shard, cfg, against);
      if (problem) throw new CheckpointError(path, `Shard "${path}" ${problem}`);
      continue;
    }
    const shapes = shard.block === "outer" ? arch.outerShapes(cfg) : arch.blockShapes(cfg);
    for (const t of shard.tensors) {
      const problem = tensorProblem(t.name, t.shape, shapes, cfg, shard.role === "middle", against);
      if (problem) throw new CheckpointError(path, `Shard "${path}" ${problem}`);
    }
    const problem = rankProblem(shard);
    if (problem) throw new CheckpointError(path, `Shard "${path}" ${problem}`);
  }
}

/**
 * Checks that each block shard's role (which its header restates) is the
 * one the manifest's split gives its block, so an edited split cannot make
 * a compressed middle block pass for an adapter block to tune.
 *
 * @throws CheckpointError naming the shard, its role and the split
 */
export function checkBlockRoles(dir: string, manifest: Manifest, layers: number): void {
  const { bottom, top } = manifest.split;
  for (const shard of manifest.shards) {
    if (shard.block === "outer") continue;
    const role = blockRole(shard.block, layers, manifest.split);
    if (shard.role !== role) {
      const path = join(dir, shard.file);
      throw new CheckpointError(
        path,
        `Shard "${path}" holds block ${shard.block} as ${shard.role}, but split ${bottom}+${top} in "${join(dir, MANIFEST_FILE)}" makes it ${role}`,
      );
    }
  }
}

/**
 * Checks that an adapter package holds a shard for each adapter block of a
 * model of `layers` blocks under `split` and for no other block (the outer
 * shard is optional: it is there when the embeddings were tuned).
 *
 * @throws CheckpointError naming the adapter's manifest and the blocks
 */
export function checkAdapterBlocks(dir: string, manifest: Manifest, layers: number, split: AdapterSplit, source: string): void {
  const expected = everyBlock(layers).filter((i) => blockRole(i, layers, split) === "adapter");
  const held = new Set(manifest.shards.flatMap((s) => (s.block === "outer" ? [] : [s.block])));
  const path = join(dir, MANIFEST_FILE);
  const extra = [...held].filter((i) => !expected.includes(i));
  if (extra.length > 0) {
    throw new CheckpointError(path, `Adapter "${dir}" has a shard for block ${extra.join(", ")}, which is not an adapter block of "${source}"`);
  }
  const missing = expected.filter((i) => !held.has(i));
  if (missing.length > 0) {
    throw new CheckpointError(
      path,
      `Adapter "${dir}" lacks adapter block${missing.length > 1 ? "s" : ""} ${missing.join(", ")}: "${source}" (split ` +
        `${split.bottom}+${split.top} of ${layers} blocks) has adapter blocks ${expected.join(", ")}, the manifest lists ` +
        `${held.size === 0 ? "none" : [...held].sort((a, b) => a - b).join(", ")}`,
    );
  }
}
