// GradOT's ablation knobs end to end on fixtures/tiny (docs/METHOD.md §2
// "Ablations", "Ties at the cut"): magnitude selection at GCS's budget, one
// part only, one unified λ, and the tie notes the manifest keeps.
import { lastValueFrom } from "rxjs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { openPackage } from "../../src/model/open_package.ts";
import { buildGradotEmulator, type GradotOptions } from "../../src/operators/gradot.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { svd } from "../../src/linalg/svd.ts";
import { matmul } from "../../src/linalg/gemm.ts";
import { peekMatrix } from "../../src/model/weights.ts";
import { tieSummary } from "../../src/compress/tie_summary.ts";
import type { CompressionNote, ModelHandle } from "../../src/records/records.ts";
import type { WeightMap } from "../../src/model/types.ts";
import { calibrationFor } from "./calibration_fixture.ts";

const FIXTURE = "fixtures/tiny";
const SPLIT = { bottom: 1, top: 1 }; // blocks 1 and 2 are the middle
const MIDDLE = [1, 2];
const ATTENTION = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"];

type Block = { index: number; role: string; params: number; compression?: CompressionNote };

let dir: string;
let model: ModelHandle;
const calibration = calibrationFor(512, 4, 16);

beforeAll(async () => {
  await initBackend("wasm", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-ablations-"));
  model = await openModel(FIXTURE, { split: SPLIT });
});
afterAll(async () => {
  await model.close();
  await rm(dir, { recursive: true, force: true });
});

const built = new Map<string, ReturnType<typeof buildOnce>>();

/** Builds an emulator with `options` (once per name) and returns its manifest's settings and middle blocks. */
function build(name: string, options: Partial<GradotOptions>) {
  if (!built.has(name)) built.set(name, buildOnce(name, options));
  return built.get(name)!;
}

async function buildOnce(name: string, options: Partial<GradotOptions>) {
  const out = join(dir, name);
  await lastValueFrom(buildGradotEmulator(model, { calibration, out, ...options }));
  const manifest = await readManifest(out);
  const blocks = ((manifest.extra?.blocks ?? []) as Block[]).filter((b) => b.role === "middle");
  return { out, settings: manifest.settings as Record<string, unknown>, blocks };
}

async function loadBlocks(dirOrModel: string | ModelHandle, indices: number[]): Promise<{ blocks: WeightMap[]; close: () => Promise<void> }> {
  const handle = typeof dirOrModel === "string" ? await openPackage(dirOrModel) : dirOrModel;
  const blocks = [];
  for (const i of indices) blocks.push(await handle.loadBlock(i));
  return {
    blocks,
    close: async () => {
      for (const b of blocks) for (const t of b.values()) t.dispose();
      if (typeof dirOrModel === "string") await handle.close();
    },
  };
}

const middleParams = (blocks: Block[]) => blocks.reduce((n, b) => n + b.params, 0);

/** Parameters of the original middle blocks. */
async function originalMiddleParams(): Promise<number> {
  const original = await loadBlocks(model, MIDDLE);
  const n = original.blocks.reduce((s, w) => s + [...w.values()].reduce((a, t) => a + t.size, 0), 0);
  await original.close();
  return n;
}

const SLOW = 60_000; // a few builds each, on a busy 2-core machine

describe("GradOT ablations on fixtures/tiny", () => {
  test("the default build records selection gcs and a tie note per selection", async () => {
    const { settings, blocks } = await build("gcs", { ratio: 0.5 });
    expect(settings.selection).toBe("gcs");
    expect(settings.only).toBeUndefined();
    expect(settings.lambda).toBeUndefined();
    expect(blocks.map((b) => b.index)).toEqual(MIDDLE);
    for (const b of blocks) {
      const ties = b.compression!.ties!;
      expect(Object.keys(ties.drd!).sort()).toEqual([...ATTENTION].sort());
      for (const note of [ties.scp!, ...Object.values(ties.drd!)]) {
        expect(note.bySecondary).toBeLessThanOrEqual(note.tied);
        expect(note.byIndex).toBeLessThanOrEqual(note.bySecondary);
      }
    }
    expect(tieSummary(blocks)).toMatch(/^SCP cut in a tie in \d of 2 blocks, \d+ channels by secondary key \(\d+ by index\); DRD cut in a tie in \d+ of 8 projections/);
  }, SLOW);

  test("magnitude selection keeps GCS's ranks and widths, with the top singular values for DRD", async () => {
    const gcs = await build("gcs", { ratio: 0.5 });
    const mag = await build("mag", { ratio: 0.5, selection: "magnitude" });
    expect(mag.settings.selection).toBe("magnitude");
    expect(mag.blocks.map((b) => b.params)).toEqual(gcs.blocks.map((b) => b.params));
    expect(mag.blocks.map((b) => b.compression!.width)).toEqual(gcs.blocks.map((b) => b.compression!.width));
    expect(mag.blocks.map((b) => b.compression!.ranks)).toEqual(gcs.blocks.map((b) => b.compression!.ranks));

    const emulator = await loadBlocks(mag.out, MIDDLE);
    const original = await loadBlocks(model, MIDDLE);
    let differs = 0;
    const gcsBlocks = await loadBlocks(gcs.out, MIDDLE);
    for (const [i, index] of MIDDLE.entries()) {
      for (const name of ATTENTION) {
        const rank = mag.blocks[i].compression!.ranks![name];
        const f = svd(peekMatrix(original.blocks[i].get(`${name}.weight`)!)); // [in, out]
        const truncated = matmul(
          { rows: f.u.rows, cols: rank, data: Float32Array.from({ length: f.u.rows * rank }, (_, k) => f.u.data[Math.floor(k / rank) * f.s.length + (k % rank)] * f.s[k % rank]) },
          { rows: rank, cols: f.vt.cols, data: f.vt.data.slice(0, rank * f.vt.cols) },
        );
        const w = emulator.blocks[i];
        const product = matmul(peekMatrix(w.get(`${name}.weight_u`)!), peekMatrix(w.get(`${name}.weight_v`)!));
        let err = 0;
        let scale = 0;
        for (let k = 0; k < product.data.length; k++) {
          err = Math.max(err, Math.abs(product.data[k] - truncated.data[k]));
          scale = Math.max(scale, Math.abs(truncated.data[k]));
        }
        expect(err, `block ${index} ${name}`).toBeLessThan(1e-4 * scale);
        const g = gcsBlocks.blocks[i];
        const gcsProduct = matmul(peekMatrix(g.get(`${name}.weight_u`)!), peekMatrix(g.get(`${name}.weight_v`)!));
        if (gcsProduct.data.some((v, k) => Math.abs(v - product.data[k]) > 1e-3 * scale)) differs++;
      }
    }
    expect(differs).toBeGreaterThan(0); // GCS does not simply keep the top singular values
    await Promise.all([emulator.close(), original.close(), gcsBlocks.close()]);
  }, SLOW);

  test("--only scp keeps attention bit for bit and takes the whole budget from the MLP", async () => {
    const before = tf.memory().numTensors;
    const both = await build("gcs", { ratio: 0.5 });
    const scp = await build("scp", { ratio: 0.5, only: "scp" });
    expect(scp.settings.only).toBe("scp");
    const original = await loadBlocks(model, MIDDLE);
    const emulator = await loadBlocks(scp.out, MIDDLE);
    for (const [i] of MIDDLE.entries()) {
      for (const name of ATTENTION) {
        expect(emulator.blocks[i].get(`${name}.weight`)!.dataSync()).toEqual(original.blocks[i].get(`${name}.weight`)!.dataSync());
      }
      expect(scp.blocks[i].compression!.ranks).toBeUndefined();
      expect(scp.blocks[i].compression!.width).toBeLessThan(both.blocks[i].compression!.width!);
    }
    expect(Math.abs(middleParams(scp.blocks) / (await originalMiddleParams()) - 0.5)).toBeLessThan(0.01);
    await Promise.all([original.close(), emulator.close()]);
    expect(tf.memory().numTensors).toBe(before);
  }, SLOW);

  test("--only drd keeps the MLP bit for bit at a reachable ratio and refuses an unreachable one", async () => {
    const drd = await build("drd", { ratio: 0.8, only: "drd" });
    const original = await loadBlocks(model, MIDDLE);
    const emulator = await loadBlocks(drd.out, MIDDLE);
    for (const [i] of MIDDLE.entries()) {
      for (const name of ["fc1.weight", "fc1.bias", "fc2.weight"]) {
        expect(emulator.blocks[i].get(name)!.dataSync()).toEqual(original.blocks[i].get(name)!.dataSync());
      }
      expect(drd.blocks[i].compression!.width).toBeUndefined();
      expect(drd.blocks[i].compression!.ties!.scp).toBeUndefined();
    }
    expect(Math.abs(middleParams(drd.blocks) / (await originalMiddleParams()) - 0.8)).toBeLessThan(0.01);
    await Promise.all([original.close(), emulator.close()]);
    await expect(build("drd-half", { ratio: 0.5, only: "drd" })).rejects.toThrow(/unreachable with --only drd .*the smallest ratio is 0\.6/);
  }, SLOW);

  test("--lambda sets both λ, is recorded, and builds what the same two λ build", async () => {
    const unified = await build("l3", { ratio: 0.5, lambda: 3 });
    expect(unified.settings).toMatchObject({ lambda: 3, lambdaAttn: 3, lambdaMlp: 3 });
    const split = await build("l3-split", { ratio: 0.5, lambdaAttn: 3, lambdaMlp: 3 });
    const a = await loadBlocks(unified.out, MIDDLE);
    const b = await loadBlocks(split.out, MIDDLE);
    for (const [i] of MIDDLE.entries()) {
      for (const [name, t] of a.blocks[i]) expect(t.dataSync()).toEqual(b.blocks[i].get(name)!.dataSync());
    }
    await Promise.all([a.close(), b.close()]);
    expect(() => buildGradotEmulator(model, { calibration, out: join(dir, "bad"), lambda: 3, lambdaMlp: 2 })).toThrow(
      "--lambda sets both λ_attn and λ_mlp: it cannot be combined with --lambda-attn or --lambda-mlp",
    );
    expect(() => buildGradotEmulator(model, { calibration, out: join(dir, "bad"), selection: "norm" as "gcs" })).toThrow(
      '--selection expects gcs or magnitude, got "norm"',
    );
  }, SLOW);
});

describe("tieSummary", () => {
  test("counts blocks and projections whose cut fell in a tie, and the channels the tie-break chose", () => {
    const note = (bySecondary: number, byIndex = 0) => ({ tied: bySecondary ? bySecondary + 3 : 0, bySecondary, byIndex });
    const blocks = [
      { compression: { ties: { scp: note(14), drd: { q: note(0), k: note(2, 1) } } } },
      { compression: { ties: { scp: note(0), drd: { q: note(0), k: note(0) } } } },
      { compression: { ties: { scp: note(50, 3) } } },
      {},
    ];
    expect(tieSummary(blocks)).toBe(
      "SCP cut in a tie in 2 of 3 blocks, 64 channels by secondary key (3 by index); DRD cut in a tie in 1 of 4 projections, 2 components by secondary key (1 by index)",
    );
    expect(tieSummary([{}, { compression: { width: 3 } }])).toBeUndefined();
  });
});
