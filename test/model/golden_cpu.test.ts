/**
 * Golden parity on the cpu backend (the reference backend the wasm kernel
 * fixes are tested against): OPT and LLaMA.
 */
import { beforeAll, describe, it } from "vitest";
import { initBackend } from "../../src/tensor/backend.ts";
import { checkGolden } from "./golden.ts";

beforeAll(async () => {
  await initBackend("cpu", true);
});

describe("golden parity on cpu", () => {
  for (const name of ["opt", "llama"]) {
    it(`${name}: hidden states, logits, losses and streamed gradients match torch`, async () => {
      await checkGolden(name);
    });
  }
});
