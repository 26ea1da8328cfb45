/**
 * Example: reading an emulator package with plain apache-arrow, no offtune
 * code in the reading loop (docs/SHARDS.md is the schema it relies on). A
 * LayerDrop emulator of fixtures/tiny is built first (no calibration, so
 * quick); then every `*.arrow` file is opened with `tableFromIPC`, each
 * column's shape is read from its `arrow.fixed_shape_tensor` field metadata,
 * and each tensor is checked against offtune's own reader.
 *
 *     npx tsx pipelines/examples/read_shards_with_arrow.ts
 *     npx deno run -A pipelines/examples/read_shards_with_arrow.ts
 *
 * @module
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromIPC } from "apache-arrow";
import { lastValueFrom, toArray } from "rxjs";
import { buildLayerDropEmulator, initBackend, openModel, readShardFile } from "../../mod.ts";

await initBackend(undefined, true);
const dir = mkdtempSync(join(tmpdir(), "offtune-example-"));
const out = join(dir, "emulator");
const model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
await lastValueFrom(buildLayerDropEmulator(model, { ratio: 0.5, out }).pipe(toArray()));
await model.close();

for (const file of readdirSync(out).filter((f) => f.endsWith(".arrow")).sort()) {
  const table = tableFromIPC(readFileSync(join(out, file)));
  const meta = table.schema.metadata; // offtune.block, offtune.role, offtune.method, ...
  console.log(`${file}: block ${meta.get("offtune.block")}, role ${meta.get("offtune.role")}, ` +
    `method ${meta.get("offtune.method")}, ${table.numCols} tensors`);
  const ours = await readShardFile(join(out, file)); // offtune's reader, for the check
  for (const field of table.schema.fields) {
    if (field.metadata.get("ARROW:extension:name") !== "arrow.fixed_shape_tensor") {
      throw new Error(`${file}: column ${field.name} is not a fixed_shape_tensor`);
    }
    const { shape } = JSON.parse(field.metadata.get("ARROW:extension:metadata")!) as { shape: number[] };
    const values = table.getChild(field.name)!.get(0)!.toArray() as Float32Array; // row 0, row-major
    const reference = ours.tensors.find((t) => t.name === field.name)!;
    const same = values.length === reference.data.length && values.every((v, i) => v === reference.data[i]);
    if (!same || shape.join() !== reference.shape.join()) throw new Error(`${file}: ${field.name} differs`);
    if (file === "block-0000.arrow" && field.name.startsWith("fc1.")) {
      console.log(`  ${field.name} [${shape.join(", ")}]: first values ${[...values.slice(0, 3)].map((v) => v.toFixed(4)).join(", ")}`);
    }
  }
}
console.log("every tensor read by apache-arrow equals offtune's reading");
rmSync(dir, { recursive: true, force: true });
