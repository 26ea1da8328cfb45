// A queued GradOT build's calibration slices without Redis
// (docs/DISTRIBUTED.md "Calibration slices"): where the calibration set is
// cut (bounds of both chunkings, the same for any worker count), and the
// slice files written and read back as they were, with errors that name the
// file.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { calibrationSlices, SLICE_TOKENS } from "../../src/distributed/calibration_slices.ts";
import {
  readSliceChunk,
  readSliceJob,
  readSliceLoss,
  type SliceChunk,
  sliceChunkFile,
  type SliceJob,
  sliceLossFile,
  sliceOutDir,
  writeSliceChunk,
  writeSliceJob,
  writeSliceLoss,
} from "../../src/distributed/slice_files.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "offtune-slice-files-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("calibrationSlices", () => {
  test("cuts at bounds of both chunkings, at least SLICE_TOKENS tokens, the last maybe shorter", () => {
    // fixtures/tiny, 64 tokens: chunks of 8, head chunks of 64 (the vocabulary streamed).
    expect(calibrationSlices(192, 64, 8, 64)).toEqual([{ from: 0, to: 64 }, { from: 64, to: 128 }, { from: 128, to: 192 }]);
    expect(calibrationSlices(150, 64, 8, 64).at(-1)).toEqual({ from: 128, to: 150 });
    // chunks of 3 and head chunks of 4: multiples of 12 sequences, 22 x 12 x 16 ≥ 4,096 tokens.
    const odd = calibrationSlices(600, 16, 3, 4);
    expect(odd.map((s) => s.to - s.from)).toEqual([264, 264, 72]);
    for (const { from } of odd) expect(from % 12).toBe(0);
    expect(264 * 16).toBeGreaterThanOrEqual(SLICE_TOKENS);
    // The OPT-125M shape's 16 x 128 tokens with a streamed head (chunks of 4, head chunks of 32): one slice.
    expect(calibrationSlices(16, 128, 4, 32)).toEqual([{ from: 0, to: 16 }]);
    expect(() => calibrationSlices(16, 128, 0, 32)).toThrow("calibrationSlices: chunk must be a positive integer, got 0");
  });
});

describe("slice files", () => {
  const job: SliceJob = {
    build: "/shared/emulator",
    model: { dir: "/shared/opt", sourceHash: "abc", split: { bottom: 1, top: 1 }, streamVocabulary: true },
    from: 64,
    to: 66,
    length: 3,
    ids: Int32Array.from([5, 6, 7, 8, 9, 10]),
    chunk: 1,
    headChunk: 2,
  };

  test("a slice job comes back as it went, named by the hash of its bytes, its output directory beside it", async () => {
    const path = await writeSliceJob(join(dir, "slices"), job);
    expect(basename(path)).toBe(`${createHash("sha256").update(readFileSync(path)).digest("hex")}.slice`);
    expect(await writeSliceJob(join(dir, "slices"), job)).toBe(path);
    expect(await readSliceJob(path)).toEqual(job);
    expect(sliceOutDir(path)).toBe(path.slice(0, -".slice".length));
    const short = await writeSliceJob(join(dir, "slices"), { ...job, ids: job.ids.subarray(1) });
    await expect(readSliceJob(short)).rejects.toThrow(`The slice job "${short}" is malformed: 5 token ids for 2 x 3`);
  });

  test("a chunk comes back as it went, a shared input once; a wrong or damaged file is named", async () => {
    const x = { rows: 2, cols: 3, data: Float32Array.from([1, 2, 3, 4, 5, -0]) };
    const gamma = { rows: 2, cols: 1, data: Float32Array.from([0.5, Number.MIN_VALUE]) };
    const chunk: SliceChunk = { block: 2, chunk: 1, linears: [{ name: "q", x, gamma }, { name: "k", gamma, sharesInputWith: "q" }] };
    const path = sliceChunkFile(join(dir, "out"), 2, 1);
    writeSliceChunk(path, chunk);
    const back = await readSliceChunk(path, 2, 1);
    expect(back).toEqual(chunk);
    expect(Object.is(back.linears[0].x!.data[5], -0)).toBe(true);
    expect(back.linears[1].x).toBeUndefined();
    await expect(readSliceChunk(path, 1, 1)).rejects.toThrow(`The slice chunk "${path}" holds chunk 1 of block 2, expected chunk 1 of block 1`);
    await expect(readSliceChunk(sliceChunkFile(join(dir, "out"), 2, 9), 2, 9)).rejects.toThrow("file does not exist");
    const bad = sliceChunkFile(join(dir, "out"), 3, 0);
    writeSliceChunk(bad, { block: 3, chunk: 0, linears: [{ name: "q", x, gamma: { ...gamma, rows: 1, data: gamma.data.subarray(1) } }] });
    await expect(readSliceChunk(bad, 3, 0)).rejects.toThrow(`The slice chunk "${bad}" has a malformed linear "q"`);
    await writeFile(bad, readFileSync(path).subarray(0, 40)); // cut short
    await expect(readSliceChunk(bad, 3, 0)).rejects.toThrow(`The slice chunk "${bad}" is not msgpack`);
  });

  test("the head chunks' losses come back as the same doubles", async () => {
    const path = sliceLossFile(join(dir, "out"));
    writeSliceLoss(path, [0.1 + 0.2, 1e-300, 3]);
    expect(await readSliceLoss(path)).toEqual([0.1 + 0.2, 1e-300, 3]);
  });
});
