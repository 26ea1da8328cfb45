/**
 * Opens an emulator (or adapter) package written by `writeShards` as a
 * {@link ModelHandle}, so the same operators and evaluators run on an
 * emulator as on the original checkpoint (docs/DESIGN.md "The shape").
 * Every shard's SHA-256 and header are checked against the manifest, and
 * the manifest's shards against its config, before use (docs/GUARANTEES.md
 * "What is verified").
 *
 * @module
 */
import { join } from "node:path";
import { type Manifest, MANIFEST_FILE, verifyPackage } from "../io/manifest.ts";
import { readShardFile } from "../io/shard_reader.ts";
import { architectureFor } from "./registry.ts";
import { withHarmonizers } from "./harmonizer.ts";
import type { WeightMap } from "./types.ts";
import { tf } from "../tensor/backend.ts";
import { type AdapterSplit, blockRole, everyBlock, type ModelHandle } from "../records/records.ts";
import { checkSplit } from "./model_handle.ts";
import { checkBlockRoles, checkPackageShapes } from "./package_checks.ts";
import { disposeWeights } from "./weights.ts";

/** A package opened as a model: the handle plus its manifest. */
export interface OpenedPackage extends ModelHandle {
  /** The package's manifest (kind, method, settings, split, shards). */
  manifest: Manifest;
}

/**
 * The weights of `block`'s shard in the package (checksum verified), or
 * undefined when the package has no shard for it (an adapter holds only
 * its adapter blocks).
 */
export async function readPackageWeights(
  dir: string,
  manifest: Manifest,
  block: number | "outer",
): Promise<WeightMap | undefined> {
  const entry = manifest.shards.find((s) => s.block === block);
  if (!entry) return undefined;
  const { tensors } = await readShardFile(join(dir, entry.file), { expectedSha256: entry.sha256 });
  return new Map(tensors.map((t) => [t.name, tf.tensor(t.data, t.shape)]));
}

async function readWeights(dir: string, manifest: Manifest, block: number | "outer"): Promise<WeightMap> {
  const weights = await readPackageWeights(dir, manifest, block);
  if (!weights) throw new Error(`Package "${dir}" has no shard for block ${block}`);
  return weights;
}

/**
 * The blocks a package's model runs (its manifest's `blockIndices`, else
 * every block; a shared block repeated at each of its positions, so every
 * consumer runs it there), checked against the config and the split: each
 * is a block of the model with a shard in the package, and no adapter
 * block is dropped (an adapter tuned on the emulator must find all its blocks).
 *
 * @throws Error naming the package and the offending block
 */
function packageBlockIndices(dir: string, manifest: Manifest, layers: number, split: AdapterSplit): number[] {
  const indices = manifest.blockIndices ?? everyBlock(layers);
  const stored = new Set(manifest.shards.map((s) => s.block));
  for (const i of indices) {
    if (i >= layers) throw new Error(`Package "${dir}" runs block ${i}, but its model has blocks 0..${layers - 1}`);
    if (!stored.has(i)) throw new Error(`Package "${dir}" has no shard for block ${i}`);
  }
  const kept = new Set(indices);
  const dropped = everyBlock(layers).find((i) => blockRole(i, layers, split) === "adapter" && !kept.has(i));
  if (dropped !== undefined) throw new Error(`Package "${dir}" drops adapter block ${dropped} (split ${split.bottom}+${split.top})`);
  return indices;
}

/**
 * Opens the package in `dir`: verifies the manifest and every shard's
 * checksum, loads the outer weights, and reads blocks on demand. The handle
 * runs the blocks {@link packageBlockIndices} gives, a block whose shard
 * holds a harmonizer (ScaleOT, docs/METHOD.md §3 "ScaleOT") as that
 * harmonizer (`withHarmonizers`).
 *
 * @throws when the manifest or a shard is missing or corrupt, a shard
 *   disagrees with the manifest or a tensor with the config, the
 *   architecture is unknown, or the package lacks a block it must run
 */
export async function openPackage(dir: string): Promise<OpenedPackage> {
  const manifest = await verifyPackage(dir);
  const manifestPath = join(dir, MANIFEST_FILE);
  const arch = withHarmonizers(architectureFor(manifest.architecture, manifestPath)); // ScaleOT's replaced blocks run as harmonizers
  const cfg = arch.parseConfig(manifest.config);
  checkSplit(manifest.split, cfg.layers, dir);
  checkPackageShapes(dir, manifest, arch, cfg, `the config in "${manifestPath}"`);
  checkBlockRoles(dir, manifest, cfg.layers);
  const blockIndices = packageBlockIndices(dir, manifest, cfg.layers, manifest.split);
  const outer = await readWeights(dir, manifest, "outer");
  return {
    manifest,
    source: dir,
    arch,
    cfg,
    split: manifest.split,
    blockIndices,
    sourceHash: manifest.sourceHash,
    outer,
    loadBlock: (i) => readWeights(dir, manifest, i),
    close: () => Promise.resolve(disposeWeights(outer)),
  };
}
