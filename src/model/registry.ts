/**
 * The architecture registry: `config.json`'s `model_type` -> {@link Architecture}
 * (docs/DESIGN.md "Models": architectures are data; a registry table, as
 * transformers.js keeps one). The built-in table lists OPT, GPT-2 and LLaMA; another
 * architecture is a new file whose object is passed to
 * {@link registerArchitecture}.
 *
 * @module
 */
import { gpt2 } from "./gpt2.ts";
import { llama } from "./llama.ts";
import { opt } from "./opt.ts";
import type { Architecture } from "./types.ts";

const registry = new Map<string, Architecture>();

/**
 * Adds an architecture under each of its `modelTypes`; a later registration
 * of the same `model_type` replaces the earlier one (so a user can override a
 * built-in).
 */
export function registerArchitecture(arch: Architecture): void {
  if (arch.modelTypes.length === 0) throw new Error("An architecture must list at least one model_type");
  for (const type of arch.modelTypes) registry.set(type, arch);
}

for (const arch of [opt, gpt2, llama]) registerArchitecture(arch);

/** The registered `model_type` values, sorted. */
export function knownModelTypes(): string[] {
  return [...registry.keys()].sort();
}

/**
 * The architecture for a `model_type`.
 *
 * @param source the config file the type came from, named in the error
 * @throws Error naming `source` and listing the known types when unknown
 */
export function architectureFor(modelType: string, source = "config.json"): Architecture {
  const arch = registry.get(modelType);
  if (!arch) {
    throw new Error(
      `Unknown model_type ${JSON.stringify(modelType)} in "${source}"; known model types: ${knownModelTypes().join(", ")}`,
    );
  }
  return arch;
}
