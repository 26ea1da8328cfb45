/**
 * A middle block scored and compressed part by part (`partJobs`, each part
 * through `gradotCompression` as a pool slot runs it, then `mergeParts`)
 * gives the same weights and the same compression note, key order included,
 * as the whole block in one go (src/distributed/block_parts.ts).
 */
import { lastValueFrom, of, toArray } from "rxjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadCalibration } from "../../src/loop/build_emulator.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { calibrateForward } from "../../src/operators/calibrate_forward.ts";
import { calibrateBackward } from "../../src/operators/calibrate_backward.ts";
import { accumulateKfac } from "../../src/operators/accumulate_kfac.ts";
import { gradotCompression, GRADOT_DEFAULTS } from "../../src/operators/gradot.ts";
import { blockJobFromValue, type BlockSettings, compressedBlockFromValue, compressedBlockValue } from "../../src/distributed/block_files.ts";
import { blockParts, mergeParts, partJobs } from "../../src/distributed/block_parts.ts";
import { disposeWeights } from "../../src/model/weights.ts";
import { shareWeights } from "../../src/distributed/shared_weights.ts";
import type { CalibrationSet, ModelHandle, StatsRecord } from "../../src/records/records.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import type { WeightMap } from "../../src/model/types.ts";

const SETTINGS: BlockSettings = { ...GRADOT_DEFAULTS, selection: "gcs" };

/** A weight map's values by name, sorted. */
const valuesOf = (weights: WeightMap) =>
  Object.fromEntries([...weights].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, t]) => [name, { shape: t.shape, data: t.dataSync() }]));

describe("a block compressed part by part", () => {
  let model: ModelHandle;
  let calibration: CalibrationSet;

  beforeAll(async () => {
    await initBackend("wasm", true);
    model = await openModel("fixtures/tiny", { split: { bottom: 1, top: 1 } });
    calibration = await loadCalibration("fixtures/data/pretrain/calibration.bin", model, { sequences: 4, length: 16, quiet: true });
  });

  afterAll(async () => {
    await model?.close();
  });

  /** The middle blocks' statistics records (fresh ones each call: compression consumes them). */
  async function middleRecords(): Promise<StatsRecord[]> {
    const records = await lastValueFrom(
      readCheckpoint(model).pipe(calibrateForward({ calibration, chunk: 2 }), calibrateBackward({ chunk: 2 }), accumulateKfac(), toArray()),
    );
    for (const r of records.filter((r) => r.role !== "middle")) disposeWeights(r.weights);
    return records.filter((r) => r.role === "middle");
  }

  test.each([
    { name: "GradOT's defaults", settings: SETTINGS },
    { name: "DRD only", settings: { ...SETTINGS, only: "drd" as const, ratio: 0.75 } }, // 0.5 is out of reach with attention alone
    { name: "SCP only", settings: { ...SETTINGS, only: "scp" as const } },
    { name: "magnitude selection", settings: { ...SETTINGS, selection: "magnitude" as const } },
  ])("the same weights and note as the whole block ($name)", async ({ settings }) => {
    const before = tf.memory().numTensors;
    const whole = await middleRecords();
    const parted = await middleRecords();
    expect(whole.map((r) => r.index)).toEqual([2, 1]);
    for (const [k, record] of whole.entries()) {
      const expected = await lastValueFrom(of(record).pipe(gradotCompression(settings)));
      const other = parted[k];
      const jobs = partJobs(other, { dir: model.source, sourceHash: model.sourceHash, split: model.split }, settings);
      expect(jobs.map((j) => j.part)).toEqual(blockParts(model, settings));
      const parts = [];
      for (const { part, job } of jobs) {
        const { weights, stats, channelProducts, index, role, settings: own } = blockJobFromValue(job);
        const scored = await lastValueFrom(of({ model, index, role, weights, stats, ...(channelProducts ? { channelProducts } : {}) }).pipe(gradotCompression(own)));
        const value = compressedBlockValue({ index, weights: scored.weights, compression: scored.compression });
        disposeWeights(scored.weights);
        parts.push({ part, block: compressedBlockFromValue(value) });
      }
      const compression = mergeParts(other.weights, parts);
      expect(valuesOf(other.weights)).toEqual(valuesOf(expected.weights));
      expect(JSON.stringify(compression)).toBe(JSON.stringify(expected.compression));
      disposeWeights(expected.weights);
      disposeWeights(other.weights);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test("a block published on a pool gives its parts views of the publication, with the copies' values", async () => {
    const copied = await middleRecords();
    const viewed = await middleRecords();
    const jobModel = { dir: model.source, sourceHash: model.sourceHash, split: model.split };
    for (const [k, record] of copied.entries()) {
      const published = shareWeights(viewed[k].weights);
      const copies = partJobs(record, jobModel, SETTINGS);
      const views = partJobs({ ...viewed[k], published }, jobModel, SETTINGS);
      expect(views.map((j) => j.part)).toEqual(copies.map((j) => j.part));
      for (const [i, { job }] of views.entries()) {
        const expected = copies[i].job.weights;
        expect(Object.keys(job.weights)).toEqual(Object.keys(expected));
        for (const [name, { shape, data }] of Object.entries(job.weights)) {
          expect(data.buffer).toBe(published.buffer); // a view, not a copy
          expect(shape).toEqual(expected[name].shape);
          expect(data).toEqual(expected[name].data);
        }
      }
      disposeWeights(record.weights);
      disposeWeights(viewed[k].weights);
    }
  });

  test("the parts are the attention linears and the MLP, less the part an ablation keeps whole", () => {
    expect(blockParts(model, SETTINGS)).toEqual(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp"]);
    expect(blockParts(model, { ...SETTINGS, only: "drd" })).toEqual(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"]);
    expect(blockParts(model, { ...SETTINGS, only: "scp" })).toEqual(["mlp"]);
  });
});
