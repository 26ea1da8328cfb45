/**
 * One way to open whatever a verb is pointed at (docs/METHOD.md §1's artefacts):
 * an original Hugging Face checkpoint, an emulator package, either of them
 * with a tuned adapter package on top. The result is always a
 * {@link ModelHandle}, so evaluation, tuning and the GradOT operators do not
 * care which it is.
 *
 * An adapter package (`kind: "adapter"`) holds shards for the adapter blocks
 * only (and for the outer weights when those were tuned). A shard may hold
 * full weights, or LoRA factors `name.lora_a` `[in, r]` and `name.lora_b`
 * `[r, out]` that are added to the base linear `name` as `W + A·B` (the
 * scale is folded into `lora_b` when the adapter is saved).
 *
 * @module
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError } from "../io/errors.ts";
import { MANIFEST_FILE, verifyPackage } from "../io/manifest.ts";
import { configSha256 } from "../io/shard_schema.ts";
import type { WeightMap } from "./types.ts";
import { tf } from "../tensor/backend.ts";
import type { ModelHandle } from "../records/records.ts";
import { openModel, type OpenModelOptions } from "./model_handle.ts";
import { openPackage, readPackageWeights } from "./open_package.ts";
import { checkAdapterBlocks, checkPackageShapes } from "./package_checks.ts";
import { requireFinishedAdapter } from "../train/tune_package.ts";
import { disposeWeights, replaceWeight } from "./weights.ts";

/** Whether `dir` is an offtune package (it has a manifest.msgpack). */
export async function isPackage(dir: string): Promise<boolean> {
  return access(join(dir, MANIFEST_FILE)).then(() => true, () => false);
}

/** Opens a checkpoint directory or an emulator package as a {@link ModelHandle}. */
export async function openSource(dir: string, options: OpenModelOptions = {}): Promise<ModelHandle> {
  return (await isPackage(dir)) ? openPackage(dir) : openModel(dir, options);
}

/**
 * Applies an adapter's weights to a block's base weights in place: full
 * tensors replace the base ones; LoRA pairs are merged into their linear.
 * Consumes (disposes) `adapter`.
 */
export function applyAdapterWeights(base: WeightMap, adapter: WeightMap, where: string): void {
  for (const [name, t] of adapter) {
    if (name.endsWith(".lora_a") || name.endsWith(".lora_b")) continue;
    if (!base.has(name)) throw new Error(`Adapter ${where} has weight "${name}", which the model block lacks`);
    const old = base.get(name)!;
    if (old.shape.join() !== t.shape.join()) {
      throw new Error(`Adapter ${where} weight "${name}" is [${t.shape}], the model's is [${old.shape}]`);
    }
    replaceWeight(base, name, t);
    adapter.delete(name);
  }
  for (const [name, a] of adapter) {
    if (!name.endsWith(".lora_a")) continue;
    const linear = name.slice(0, -".lora_a".length);
    const b = adapter.get(`${linear}.lora_b`);
    const w = base.get(`${linear}.weight`);
    if (!b || !w) throw new Error(`Adapter ${where} has LoRA factors for "${linear}" without a matching pair or base weight`);
    replaceWeight(base, `${linear}.weight`, tf.tidy(() => tf.add(w, tf.matMul(a, b)))); // [in, out]
  }
  disposeWeights(adapter);
}

/** The top-level keys whose values differ between two configs, for messages. */
function differingKeys(a: Record<string, unknown>, b: Record<string, unknown>): string {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    .filter((k) => configSha256({ v: a[k] ?? null }) !== configSha256({ v: b[k] ?? null }));
  return keys.map((k) => `${k} ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}`).join(", ");
}

/** Options of {@link withAdapter}. */
export interface WithAdapterOptions {
  /** Accept an epoch checkpoint of a tuning run that has not finished (`--allow-unfinished`). */
  allowUnfinished?: boolean;
}

/**
 * `base` with the tuned adapter in `adapterDir` applied. Verifies the
 * package (verifyPackage) and refuses an adapter made for another model
 * (architecture, config, source hash) or another adapter/emulator split,
 * one that lacks an adapter block or holds another block, tensors whose
 * shapes the model's config does not imply (docs/GUARANTEES.md "What is
 * verified"), and an unfinished one unless `allowUnfinished`
 * (src/train/tune_package.ts `requireFinishedAdapter`).
 */
export async function withAdapter(base: ModelHandle, adapterDir: string, options: WithAdapterOptions = {}): Promise<ModelHandle> {
  const manifest = await verifyPackage(adapterDir);
  if (manifest.kind !== "adapter") throw new Error(`"${adapterDir}" is an ${manifest.kind} package, not an adapter`);
  if (!options.allowUnfinished) requireFinishedAdapter(adapterDir, manifest);
  const manifestPath = join(adapterDir, MANIFEST_FILE);
  if (manifest.architecture !== base.cfg.modelType) {
    throw new CheckpointError(
      manifestPath,
      `Adapter "${adapterDir}" is for a ${manifest.architecture} model, but "${base.source}" is ${base.cfg.modelType}`,
    );
  }
  if (configSha256(manifest.config) !== configSha256(base.cfg.raw)) {
    throw new CheckpointError(
      manifestPath,
      `Adapter "${adapterDir}" has another config than "${base.source}" (adapter vs model: ${differingKeys(manifest.config, base.cfg.raw)})`,
    );
  }
  if (manifest.sourceHash !== base.sourceHash) {
    throw new Error(
      `Adapter "${adapterDir}" was tuned for model ${manifest.sourceHash.slice(0, 12)}…, but "${base.source}" is ${base.sourceHash.slice(0, 12)}…`,
    );
  }
  if (manifest.split.bottom !== base.split.bottom || manifest.split.top !== base.split.top) {
    throw new Error(
      `Adapter "${adapterDir}" has split ${manifest.split.bottom}+${manifest.split.top}, the model ${base.split.bottom}+${base.split.top}`,
    );
  }
  checkAdapterBlocks(adapterDir, manifest, base.cfg.layers, base.split, base.source);
  checkPackageShapes(adapterDir, manifest, base.arch, base.cfg, `the model "${base.source}"`);
  const outerAdapter = await readPackageWeights(adapterDir, manifest, "outer");
  if (outerAdapter) applyAdapterWeights(base.outer, outerAdapter, `"${adapterDir}" (outer)`);
  return {
    ...base,
    source: `${base.source} + ${adapterDir}`,
    async loadBlock(i) {
      const weights = await base.loadBlock(i);
      try {
        const adapter = await readPackageWeights(adapterDir, manifest, i);
        if (adapter) applyAdapterWeights(weights, adapter, `"${adapterDir}" block ${i}`);
      } catch (e) {
        disposeWeights(weights);
        throw e;
      }
      return weights;
    },
  };
}
