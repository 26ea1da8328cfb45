import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { initBackend } from "../../src/tensor/backend.ts";

/** The model the baselines' CLI tests build from (4 blocks; split 1+1 leaves blocks 1 and 2 in the middle). */
export const TINY = "fixtures/tiny";

/** The calibration those tests build with: 8 sequences of 32 tokens of the shipped calibration text. */
export const CALIBRATION_FLAGS = ["--calibration", "fixtures/data/pretrain/calibration.bin", "--sequences", "8", "--length", "32"];

/**
 * A temporary directory for one test file, made (after the wasm backend is
 * initialised) before its tests and removed after them; the returned
 * function gives its path.
 */
export function tempRootForFile(prefix: string): () => string {
  let root: string | undefined;
  beforeAll(async () => {
    await initBackend("wasm", true);
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });
  return () => {
    if (!root) throw new Error(`tempRootForFile("${prefix}"): used before its beforeAll ran`);
    return root;
  };
}
