// README.md "As a library": its ```ts block runs as written, on fixtures/tiny
// (4 blocks, split 1 + 1 so two middle blocks are compressed) instead of
// fixtures/small (the only edits: the model, the output directory and the
// import path), and writes a verifiable GradOT emulator package.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { GRADOT_DEFAULTS, openPackage, readManifest, verifyPackage } from "../mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
// inside the repository, so the example's bare "rxjs" import resolves to node_modules
const work = mkdtempSync(join(ROOT, "test", ".readme-example-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The README's TypeScript blocks. */
function readmeTsBlocks(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  return [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** `text` with `from` replaced by `to`, failing when `from` is not there (the README changed). */
function substitute(text: string, from: string, to: string): string {
  expect(text, `the README example should contain ${from}`).toContain(from);
  return text.replaceAll(from, to);
}

describe("README library example", () => {
  test("runs on fixtures/tiny and writes a GradOT emulator with the CLI's defaults", async () => {
    const blocks = readmeTsBlocks();
    expect(blocks).toHaveLength(1);
    const out = join(work, "emulator");
    let script = substitute(blocks[0], 'openModel("fixtures/small")', 'openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } })');
    script = substitute(script, '"out/emulator"', JSON.stringify(out));
    script = substitute(script, '"./mod.ts"', JSON.stringify(join(ROOT, "mod.ts")));
    const file = join(work, "example.ts");
    writeFileSync(file, script);
    await import(file);

    await verifyPackage(out);
    const manifest = await readManifest(out);
    expect(manifest.method).toBe("gradot");
    expect(manifest.settings).toMatchObject({ ...GRADOT_DEFAULTS });
    const blocksOf = (manifest.extra as { blocks: Array<{ index: number; role: string; compression?: { width?: number } }> }).blocks;
    const middle = blocksOf.filter((b) => b.role === "middle");
    expect(middle.map((b) => b.index)).toEqual([1, 2]);
    for (const b of middle) expect(b.compression?.width).toBeLessThan(256); // fixtures/tiny's MLP width: SCP pruned it
    const emulator = await openPackage(out);
    try {
      expect(emulator.blockIndices).toEqual([0, 1, 2, 3]);
    } finally {
      await emulator.close();
    }
  });
});
