/**
 * Golden parity on wasm (the default backend): OPT (pre-LN, F16 weights;
 * post-LN, F32), GPT-2 (F32, names without `transformer.`) and LLaMA (BF16,
 * grouped-query attention, RoPE, untied head) against the PyTorch reference.
 */
import { beforeAll, describe, it } from "vitest";
import { initBackend } from "../../src/tensor/backend.ts";
import { checkGolden } from "./golden.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("golden parity on wasm", () => {
  for (const name of ["opt", "opt_post_ln", "gpt2", "llama"]) {
    it(`${name}: hidden states, logits, losses and streamed gradients match torch`, async () => {
      await checkGolden(name);
    });
  }
});
