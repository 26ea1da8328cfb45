import { memoryModel } from "../../src/model/memory_model.ts";
import type { WeightMap } from "../../src/model/types.ts";
import type { ModelHandle } from "../../src/records/records.ts";
import { tf } from "../../src/tensor/backend.ts";

/** The linear outputs that, zeroed, make an OPT block return its input (attention and MLP add nothing to the residual). */
const RESIDUAL_WRITERS = ["self_attn.out_proj.weight", "self_attn.out_proj.bias", "fc2.weight", "fc2.bias"];

/**
 * `base`'s blocks in memory, with blocks `identity` made identities (their
 * attention and MLP outputs zeroed), for the CRaSh and ScaleOT tests
 * (docs/METHOD.md §3), whose similar or unimportant blocks are then known by
 * construction. `dir` is the model directory the handle reports.
 */
export async function withIdentityBlocks(base: ModelHandle, identity: readonly number[], dir: string): Promise<ModelHandle> {
  const blocks: WeightMap[] = [];
  for (const i of base.blockIndices) {
    const weights = await base.loadBlock(i);
    if (identity.includes(i)) {
      for (const name of RESIDUAL_WRITERS) {
        const t = weights.get(name)!;
        weights.set(name, tf.zerosLike(t));
        t.dispose();
      }
    }
    blocks.push(weights);
  }
  return memoryModel(base, blocks, dir);
}
