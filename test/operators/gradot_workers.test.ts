/**
 * The worker count of a GradOT build without `workers` (`defaultGradotWorkers`,
 * docs/DISTRIBUTED.md "How a GradOT build uses the cores"): one thread below
 * the measured work threshold, else the cores, at most one per chunk.
 */
import { describe, expect, test } from "vitest";
import { architectureFor } from "../../src/model/registry.ts";
import { blockCalibrationWork, defaultGradotWorkers, POOL_MIN_BLOCK_WORK } from "../../src/operators/gradot.ts";
import type { CalibrationSet, ModelHandle } from "../../src/records/records.ts";
import { optConfigJson } from "../../src/train/opt_config.ts";
import { OPT_SHAPES } from "../../src/train/random_checkpoint.ts";

/** A handle carrying only what the rule reads: an OPT architecture and config of `hidden`, `ffn`. */
function optModel(hidden: number, ffn: number): ModelHandle {
  const arch = architectureFor("opt");
  const cfg = arch.parseConfig(optConfigJson({ layers: 12, hidden, heads: 16, ffn, maxPositions: 2048, vocabSize: 1024, bosId: 2, eosId: 2, padId: 1 }));
  return { arch, cfg } as ModelHandle;
}

const calibration = (sequences: number, length: number): CalibrationSet => ({ sequences, length, ids: new Int32Array(sequences * length) });

describe("defaultGradotWorkers", () => {
  const small = optModel(192, 768); // fixtures/small's blocks
  const opt125m = optModel(OPT_SHAPES["opt-125m"].hidden, OPT_SHAPES["opt-125m"].ffn);

  test("a block's work is the tokens times its linears' multiply-adds per token", () => {
    // q, k, v, out: d·d each; fc1 d·ffn, fc2 ffn·d.
    expect(blockCalibrationWork(small, calibration(16, 128))).toBe(2048 * (4 * 192 * 192 + 2 * 192 * 768));
    expect(blockCalibrationWork(opt125m, calibration(16, 128))).toBe(2048 * (4 * 768 * 768 + 2 * 768 * 3072));
  });

  test("below the threshold one thread, whatever the cores: fixtures/small's and the OPT-125M shape's 2048 tokens", () => {
    for (const model of [small, opt125m]) {
      expect(blockCalibrationWork(model, calibration(16, 128))).toBeLessThan(POOL_MIN_BLOCK_WORK);
      expect(defaultGradotWorkers(model, calibration(16, 128), undefined, 2)).toBe(1);
      expect(defaultGradotWorkers(model, calibration(16, 128), 1, 16)).toBe(1);
    }
  });

  test("at or above it the cores, at most one per chunk: the OPT-1.3B shape, or the OPT-125M shape with 4x the tokens", () => {
    const opt13b = optModel(OPT_SHAPES["opt-1.3b"].hidden, OPT_SHAPES["opt-1.3b"].ffn);
    expect(blockCalibrationWork(opt13b, calibration(16, 128))).toBeGreaterThanOrEqual(POOL_MIN_BLOCK_WORK);
    expect(defaultGradotWorkers(opt13b, calibration(16, 128), 4, 2)).toBe(2);
    expect(defaultGradotWorkers(opt13b, calibration(16, 128), 4, 16)).toBe(4); // 16 sequences in chunks of 4
    expect(defaultGradotWorkers(opt13b, calibration(16, 128), 16, 16)).toBe(1); // one chunk: nothing to share
    expect(defaultGradotWorkers(opt125m, calibration(64, 128), 4, 2)).toBe(2);
  });
});
