import { concat, firstValueFrom, lastValueFrom, map, take, throwError, toArray } from "rxjs";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import { ActivationStore, chunkTensor, readChunkAt, writeChunkAt } from "../../src/io/activation_store.ts";
import { takeScratch } from "../../src/linalg/scratch_arrays.ts";
import { openModel } from "../../src/model/model_handle.ts";
import { readCheckpoint } from "../../src/operators/read_checkpoint.ts";
import { calibrateForward } from "../../src/operators/calibrate_forward.ts";
import { calibrateBackward } from "../../src/operators/calibrate_backward.ts";
import type { AdapterSplit, CalibrationEvent, CalibrationSet, ModelHandle } from "../../src/records/records.ts";

import { calibrationFor } from "../operators/calibration_fixture.ts";

const FIXTURE = "fixtures/golden/opt";


/** Releases the weights a backward event carries. */
function disposeEvent(event: CalibrationEvent): void {
  if (event.kind === "block") for (const t of event.weights.values()) t.dispose();
}

beforeAll(async () => {
  await initBackend("wasm", true);
});

describe("ActivationStore", () => {
  const [n, t, d] = [7, 4, 5];
  const data = Float32Array.from({ length: n * t * d }, (_, i) => Math.sin(i) * 1e3 + i / 7); // [N, T, d]

  test("round-trips an array written chunk by chunk, exactly, by any sequence range", () => {
    const before = tf.memory().numTensors;
    const store = new ActivationStore();
    const calls: Array<[number, number]> = [];
    const stored = store.write(n, t, d, 3, (a, b) => {
      calls.push([a, b]);
      return tf.tensor3d(data.subarray(a * t * d, b * t * d), [b - a, t, d]); // [n, T, d]
    });
    expect(calls).toEqual([[0, 3], [3, 6], [6, 7]]);
    expect([stored.sequences, stored.length, stored.width]).toEqual([n, t, d]);
    for (let from = 0; from <= n; from++) {
      for (let to = from; to <= n; to++) {
        expect(stored.read(from, to)).toEqual(data.subarray(from * t * d, to * t * d));
      }
    }
    const x = chunkTensor(stored, 2, 5); // [3, T, d]
    expect(x.shape).toEqual([3, t, d]);
    expect(x.dataSync()).toEqual(data.subarray(2 * t * d, 5 * t * d));
    x.dispose();
    const into = new Float32Array(2 * t * d);
    stored.readInto(4, 6, into);
    expect(into).toEqual(data.subarray(4 * t * d, 6 * t * d));
    expect(() => stored.readInto(4, 6, new Float32Array(3))).toThrow("do not fill 3 values");
    expect(() => stored.read(5, 8)).toThrow(RangeError);
    expect(() => stored.read(3, 2)).toThrow(RangeError);
    store.close();
    expect(tf.memory().numTensors).toBe(before);
  });

  test("keeps one file per array, deletes it on dispose and the directory on close", () => {
    const store = new ActivationStore();
    expect(store.directory).toBeUndefined(); // nothing on disk before the first write
    const chunk = (a: number, b: number) => tf.zeros([b - a, t, d]);
    const first = store.write(n, t, d, 2, chunk);
    store.write(n, t, d, 4, chunk);
    const dir = store.directory!;
    expect(dir.startsWith(tmpdir())).toBe(true);
    expect(readdirSync(dir)).toHaveLength(2);
    first.dispose();
    expect(readdirSync(dir)).toHaveLength(1);
    store.close();
    expect(existsSync(dir)).toBe(false);
    expect(store.directory).toBeUndefined();
    expect(() => store.write(n, t, d, 2, chunk)).toThrow(/closed/);
    store.close(); // idempotent
  });

  test("writeEach stores several arrays of one pass, each by its own width and name", () => {
    const before = tf.memory().numTensors;
    const dir = mkdtempSync(join(tmpdir(), "offtune-store-each-"));
    const store = new ActivationStore(dir);
    const wide = Float32Array.from({ length: n * t * 3 }, (_, i) => i - 40); // [N, T, 3]
    let calls = 0;
    const [narrow, three] = store.writeEach(n, t, [d, 3], 3, (a, b) => {
      calls++;
      return [tf.tensor3d(data.subarray(a * t * d, b * t * d), [b - a, t, d]), tf.tensor3d(wide.subarray(a * t * 3, b * t * 3), [b - a, t, 3])];
    }, ["x", "y"]);
    expect(calls).toBe(3);
    expect(narrow.read(0, n)).toEqual(data);
    expect(three.read(2, 6)).toEqual(wide.subarray(2 * t * 3, 6 * t * 3));
    expect(readdirSync(dir).sort()).toEqual(["x", "y"]);
    expect(store.open("y", n, t, 3)!.read(0, n)).toEqual(wide);
    expect(() => store.writeEach(n, t, [d, 3], 3, (a, b) => [tf.zeros([b - a, t, d])], ["p", "q"])).toThrow("has 1 arrays, expected 2");
    expect(() => store.writeEach(n, t, [d, 3], 3, (a, b) => [tf.zeros([b - a, t, d])], ["p"])).toThrow("a name for each array");
    store.close();
    rmSync(dir, { recursive: true, force: true });
    expect(tf.memory().numTensors).toBe(before);
  });

  test("writeAsync appends chunks in chunk order whatever order they come in, and hands their arrays to the scratch pool", async () => {
    const store = new ActivationStore();
    const given: Float32Array[] = [];
    const delays = [30, 0, 15]; // chunk 0 comes last
    const stored = await store.writeAsync(n, t, d, 3, async (a, b) => {
      await new Promise((r) => setTimeout(r, delays[a / 3]));
      const chunk = data.slice(a * t * d, b * t * d); // its own array: the store's once returned
      given.push(chunk);
      return chunk;
    });
    expect(stored.read(0, n)).toEqual(data);
    // The pool hands the written arrays out again (the last given first), not fresh memory.
    const lengths = given.map((g) => g.length);
    const taken = lengths.map(() => takeScratch(3 * t * d));
    expect(taken.filter((a) => given.includes(a)).length).toBe(lengths.filter((l) => l === 3 * t * d).length);
    store.close();
  });

  test("writeEachAt has each chunk written at its place, in any order, as writeEach writes the same values; readChunkAt reads one back", async () => {
    const store = new ActivationStore();
    const widths = [d, 2];
    const second = Float32Array.from({ length: n * t * 2 }, (_, i) => i / 7 - 3); // [n, T, 2]
    const delays = [30, 0, 15]; // chunk 0 written last
    const [first, other] = await store.writeEachAt(n, t, widths, 3, async (a, b, targets) => {
      await new Promise((r) => setTimeout(r, delays[a / 3]));
      expect(targets.map((x) => x.values)).toEqual(widths.map((w) => (b - a) * t * w));
      writeChunkAt(targets[0], data.slice(a * t * d, b * t * d));
      writeChunkAt(targets[1], second.subarray(a * t * 2, b * t * 2)); // a view: its own bytes only
    });
    expect(first.read(0, n)).toEqual(data);
    expect(other.read(0, n)).toEqual(second);
    // Another thread reads a chunk by its place alone.
    const out = new Float32Array(2 * t * 2);
    readChunkAt(other.place(3, 5), out);
    expect(out).toEqual(second.subarray(3 * t * 2, 5 * t * 2));
    expect(() => readChunkAt(other.place(3, 5), new Float32Array(3))).toThrow(/has 16 values, read into 3/);
    expect(() => readChunkAt({ ...other.place(6, 7), position: 10_000 }, new Float32Array(8))).toThrow(/ends before byte/);
    expect(() => other.place(6, 8)).toThrow("outside [0, 7)");
    await expect(store.writeEachAt(n, t, [d], 3, async (a, b, [target]) => writeChunkAt(target, data.slice(a * t * d, b * t * d - 1))))
      .rejects.toThrow(/has 59 values, expected 60/);
    store.close();
    expect(() => writeChunkAt({ path: join(store.directory ?? "/nonexistent", "gone.f32"), position: 0, values: 1 }, new Float32Array(1))).toThrow(/gone\.f32/);
  });

  test("beginAt: a chunk written at its place reads back before the others are written; a persistent store names the array only once finished", () => {
    const dir = mkdtempSync(join(tmpdir(), "offtune-store-begin-"));
    const store = new ActivationStore(dir);
    try {
      const arrays = store.beginAt(n, t, [d], ["act-2"]);
      const [place] = arrays.places(3, 6);
      expect(place.values).toBe(3 * t * d);
      writeChunkAt(place, data.slice(3 * t * d, 6 * t * d));
      const early = new Float32Array(3 * t * d);
      readChunkAt(place, early); // as the next block's chunk reads it
      expect(early).toEqual(data.subarray(3 * t * d, 6 * t * d));
      expect(store.open("act-2", n, t, d)).toBeUndefined(); // not complete: a resumed build recomputes it
      for (const [a, b] of [[0, 3], [6, 7]]) writeChunkAt(arrays.places(a, b)[0], data.slice(a * t * d, b * t * d));
      const [done] = arrays.finish();
      expect(done.read(0, n)).toEqual(data);
      expect(readdirSync(dir)).toEqual(["act-2"]);
      expect(store.open("act-2", n, t, d)!.read(0, n)).toEqual(data);
      const unfinished = store.beginAt(n, t, [d], ["act-3"]);
      store.close();
      expect(() => unfinished.finish()).toThrow("The activation store is closed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("rejects a chunk of the wrong shape", () => {
    const store = new ActivationStore();
    expect(() => store.write(n, t, d, 2, (a, b) => tf.zeros([b - a, t, d + 1]))).toThrow(/expected 2 x 4 x 5/);
    store.close();
  });
});

describe("calibration activations leave no file behind", () => {
  let root: string;
  let model: ModelHandle;
  let calibration: CalibrationSet;
  const open = (split: AdapterSplit) => openModel(FIXTURE, { split });
  /** The activation directories under the stubbed temporary directory. */
  const leftovers = () => readdirSync(root).filter((f) => f.startsWith("offtune-activations-"));

  beforeAll(async () => {
    model = await open({ bottom: 0, top: 1 });
    calibration = calibrationFor(model.cfg.vocabSize, 4, 16);
  });
  afterAll(async () => {
    await model.close();
  });
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "offtune-activations-test-"));
    vi.stubEnv("TMPDIR", root); // os.tmpdir() reads it on every call
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    rmSync(root, { recursive: true, force: true });
  });

  test("the forward stores no input below the split's bottom; the records' taker closes the store", async () => {
    const bottom = await open({ bottom: 1, top: 0 });
    const records = await lastValueFrom(readCheckpoint(bottom).pipe(calibrateForward({ calibration }), toArray()));
    expect(records.map((r) => [r.index, r.input !== undefined, r.output !== undefined])).toEqual([
      [0, false, false],
      [1, true, true],
    ]);
    const dir = records[0].store.directory!;
    expect(readdirSync(dir)).toHaveLength(2); // block 1's input and output
    records[0].store.close();
    expect(leftovers()).toEqual([]);
    await bottom.close();
  });

  test("on completion", async () => {
    const seen: number[] = [];
    const events = await lastValueFrom(
      readCheckpoint(model).pipe(
        calibrateForward({ calibration, chunk: 3 }),
        map((r) => {
          seen.push(leftovers().length);
          return r;
        }),
        calibrateBackward({ chunk: 3 }),
        toArray(),
      ),
    );
    expect(seen).toEqual([1, 1]); // the store was on disk during the pass
    expect(leftovers()).toEqual([]);
    events.forEach(disposeEvent);
  });

  test("on an error upstream of the forward", async () => {
    const failing = concat(readCheckpoint(model).pipe(take(1)), throwError(() => new Error("read failed")));
    await expect(lastValueFrom(failing.pipe(calibrateForward({ calibration }), calibrateBackward())))
      .rejects.toThrow("read failed");
    expect(leftovers()).toEqual([]);
  });

  test("on an error in the forward before its first record (the embedding already written)", async () => {
    const broken = readCheckpoint(model).pipe(
      map((r) => {
        for (const w of r.weights.values()) w.dispose();
        return { ...r, weights: new Map() };
      }),
    );
    await expect(lastValueFrom(broken.pipe(calibrateForward({ calibration }), calibrateBackward()))).rejects.toThrow();
    expect(leftovers()).toEqual([]);
  });

  test("on an error downstream of the backward", async () => {
    const failing = readCheckpoint(model).pipe(
      calibrateForward({ calibration }),
      calibrateBackward(),
      map((event) => {
        disposeEvent(event);
        throw new Error("consumer failed");
      }),
    );
    await expect(lastValueFrom(failing)).rejects.toThrow("consumer failed");
    expect(leftovers()).toEqual([]);
  });

  test("on unsubscription mid-backward", async () => {
    const first = await firstValueFrom(readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward()));
    disposeEvent(first);
    expect(leftovers()).toEqual([]);
  });
});

describe("an interrupted process", () => {
  test("removes its open store directories on SIGTERM and still dies of the signal", async () => {
    const { spawn } = await import("node:child_process");
    const script = [
      `import { ActivationStore } from ${JSON.stringify(new URL("../../src/io/activation_store.ts", import.meta.url).pathname)};`,
      `import { initBackend, tf } from ${JSON.stringify(new URL("../../src/tensor/backend.ts", import.meta.url).pathname)};`,
      "await initBackend();",
      "const store = new ActivationStore();",
      "store.write(2, 3, 4, 1, () => tf.ones([1, 3, 4]));",
      "console.log(store.directory);",
      "setInterval(() => {}, 1000);",
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const dir = await new Promise<string>((resolve) => child.stdout!.once("data", (b: Buffer) => resolve(b.toString().trim())));
    expect(existsSync(dir)).toBe(true);
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
    child.kill("SIGTERM");
    expect(await exited).toBe("SIGTERM");
    expect(existsSync(dir)).toBe(false);
  });
});
