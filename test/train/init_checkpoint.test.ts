/**
 * The starting weights of `pretrain --init` (src/train/init_checkpoint.ts):
 * an F16 checkpoint's weights land in the flat vector exactly, slot by slot;
 * a checkpoint that does not fit is refused with an error naming its file.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint, saveCheckpoint, type TensorToSave } from "../../src/io/checkpoint.ts";
import { openSafetensors } from "../../src/io/safetensors_file.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { trainModel } from "../../src/train/gradients.ts";
import { checkpointParams, openInitCheckpoint } from "../../src/train/init_checkpoint.ts";
import { writeRandomOpt } from "../../src/train/random_checkpoint.ts";
import { fileError } from "../io/errors.ts";

/** IEEE binary16 `bits` as a number, decoded by the definition (independently of the reader). */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-init-checkpoint-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("openInitCheckpoint and checkpointParams", () => {
  it("read fixtures/tiny's F16 weights into the flat vector exactly, in layout order", async () => {
    const handle = await openInitCheckpoint("fixtures/tiny");
    const { arch, layout } = trainModel(handle.cfg.raw);
    const params = await checkpointParams(handle, layout);
    await handle.close();
    expect(params.length).toBe(layout.size);
    const file = await openSafetensors(join("fixtures", "tiny", "model.safetensors"));
    expect(file.header.entries.length).toBe(layout.slots.length);
    for (const slot of layout.slots) {
      const entry = file.entry(slot.key)!;
      expect(entry.dtype, slot.key).toBe("F16");
      const bytes = await file.readBytes(slot.key);
      const halves = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const expected = new Float32Array(slot.size);
      // HF stores linear weights [out, in]; the flat vector holds them [in, out].
      const [rows, cols] = arch.storedTransposed(slot.name) ? entry.shape : [1, slot.size];
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const value = halfToNumber(halves.getUint16(2 * (r * cols + c), true));
          expected[arch.storedTransposed(slot.name) ? c * rows + r : r * cols + c] = value;
        }
      }
      const got = new Uint32Array(params.slice(slot.offset, slot.offset + slot.size).buffer);
      const mismatches = new Uint32Array(expected.buffer).filter((bits, i) => bits !== got[i]).length;
      expect(mismatches, slot.key).toBe(0);
    }
    await file.close();
  });

  const SHAPE = { layers: 2, hidden: 8, heads: 2, ffn: 16, maxPositions: 8, vocabSize: 12, bosId: 2, eosId: 2, padId: 1 };

  /** A random 2-block OPT checkpoint in `root/label`, its tensors passed through `edit` before saving. */
  async function checkpoint(label: string, edit: (tensors: TensorToSave[]) => TensorToSave[] = (t) => t): Promise<string> {
    const source = join(root, `${label}-source`);
    await writeRandomOpt(source, SHAPE, { dtype: "F32" });
    const reader = await openCheckpoint(source);
    const tensors = await Promise.all(reader.tensors().map(async (t) => ({ name: t.name, shape: t.shape, data: await reader.read(t.name) })));
    await reader.close();
    const dir = join(root, label);
    await saveCheckpoint(dir, JSON.parse(await readFile(join(source, "config.json"), "utf8")), edit(tensors));
    return dir;
  }

  it("refuse a surplus tensor, a wrong shape, a NaN, a missing file and a model other than OPT, naming the file", async () => {
    const surplus = await checkpoint("surplus", (t) => [...t, { name: "lm_head.weight", shape: [12, 8], data: new Float32Array(96) }]);
    await expect(openInitCheckpoint(surplus)).rejects.toThrow(fileError(
      `Checkpoint "${surplus}" holds 1 tensor its config.json does not name (e.g. "lm_head.weight" in "${join(surplus, "model.safetensors")}")`,
      join(surplus, "model.safetensors"),
    ));

    const narrow = await checkpoint("narrow");
    const config = JSON.parse(await readFile(join(narrow, "config.json"), "utf8"));
    await writeFile(join(narrow, "config.json"), JSON.stringify({ ...config, ffn_dim: 12 }));
    await expect(openInitCheckpoint(narrow)).rejects.toThrow(fileError(
      `Cannot load "model.decoder.layers.0.fc1.weight" from "${join(narrow, "model.safetensors")}": ` +
        `config.json implies shape [12, 8] ([out, in]), the file has [16, 8]`,
      join(narrow, "model.safetensors"),
    ));

    const fc2 = "model.decoder.layers.1.fc2.weight";
    const nan = await checkpoint("nan", (t) => t.map((x) => x.name === fc2 ? { ...x, data: x.data.map((v, i) => i === 5 ? NaN : v) } : x));
    const handle = await openInitCheckpoint(nan);
    const { layout } = trainModel(handle.cfg.raw);
    await expect(checkpointParams(handle, layout)).rejects.toThrow(fileError(
      `Tensor "${fc2}" in "${join(nan, "model.safetensors")}" holds NaN at flat index 5 (first non-finite value)`,
      join(nan, "model.safetensors"),
    ));
    await handle.close();

    const empty = join(root, "empty");
    await mkdir(empty);
    await writeFile(join(empty, "config.json"), JSON.stringify(config));
    await expect(openInitCheckpoint(empty)).rejects.toThrow(fileError(
      `Cannot open checkpoint "${empty}": neither "${join(empty, "model.safetensors")}" nor "${join(empty, "model.safetensors.index.json")}" exists`,
    ));
    await expect(openInitCheckpoint(join(root, "absent"))).rejects.toThrow(/Cannot open checkpoint ".*absent": directory does not exist/);

    const gpt2 = join("fixtures", "golden", "gpt2");
    await expect(openInitCheckpoint(gpt2)).rejects.toThrow(fileError(
      `Cannot start a pretraining run from "${gpt2}": offtune pretrains OPT models, "${join(gpt2, "config.json")}" has model_type "gpt2"`,
      join(gpt2, "config.json"),
    ));
  });
});
