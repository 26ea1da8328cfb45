// The queue's plumbing without Redis (docs/DISTRIBUTED.md "What is
// idempotent"): job ids by content, the jobs read off a verb's flags, the
// --queue URL, and a GradOT block written to a file and read back as it was.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { jobId, JobSubmitter, queueConnection, verbJob } from "../../src/distributed/job_queue.ts";
import { readBlockJob, writeBlockJob } from "../../src/distributed/block_files.ts";
import { denseFactor, rowFactor } from "../../src/stats/symmetric_factor.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";
import type { ModelHandle, StatsRecord } from "../../src/records/records.ts";
import { runExperiment } from "../../src/loop/experiment.ts";
import { main as buildEmulatorMain } from "../../pipelines/build_emulator.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { main as workerMain } from "../../pipelines/worker.ts";

let dir: string;
beforeAll(async () => {
  await initBackend("cpu", true);
  dir = await mkdtemp(join(tmpdir(), "offtune-job-queue-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("jobId", () => {
  test("names the arguments and the inputs' contents, files and directories", async () => {
    const file = join(dir, "in.txt");
    const tree = join(dir, "tree");
    await mkdir(join(tree, "sub"), { recursive: true });
    await writeFile(file, "one");
    await writeFile(join(tree, "sub", "x"), "a");
    const job = { args: ["eval", "--model", file], inputs: [file, tree] };
    const first = await jobId(job);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await jobId(job)).toBe(first);
    expect(await jobId({ ...job, args: ["eval", "--model", file, "--ppl"] })).not.toBe(first);
    await writeFile(file, "two");
    const second = await jobId(job);
    expect(second).not.toBe(first);
    await writeFile(join(tree, "sub", "x"), "b");
    expect(await jobId(job)).not.toBe(second);
    await expect(jobId({ args: [], inputs: [join(dir, "missing")] })).rejects.toThrow(`The job input "${join(dir, "missing")}" does not exist`);
  });
});

describe("verbJob", () => {
  test("makes the paths absolute and reads inputs and outputs off the flags", () => {
    const job = verbJob(["eval", "--model", "fixtures/tiny", "--adapter", "a", "--tasks", "x", "--json", "out/e.json", "--limit", "8"], "logs/e.log");
    expect(job).toEqual({
      args: ["eval", "--model", resolve("fixtures/tiny"), "--adapter", resolve("a"), "--tasks", "x", "--json", resolve("out/e.json"), "--limit", "8"],
      log: resolve("logs/e.log"),
      inputs: [resolve("fixtures/tiny"), resolve("a")],
      outputs: [resolve("out/e.json")],
    });
  });
});

describe("queueConnection", () => {
  test("reads host, port, database and credentials of a redis:// URL", () => {
    expect(queueConnection("redis://u:p%40ss@10.0.0.2:6380/3")).toMatchObject({ host: "10.0.0.2", port: 6380, db: 3, username: "u", password: "p@ss" });
    expect(queueConnection("redis://queue.local")).toMatchObject({ host: "queue.local", port: 6379, db: 0 });
  });
  test("refuses what is not one, naming --queue", () => {
    expect(() => queueConnection("localhost:6379")).toThrow(`--queue "localhost:6379" is not a redis://host:port URL`);
    expect(() => queueConnection("http://h:1")).toThrow(`--queue "http://h:1" is not a redis://host:port URL`);
    expect(() => queueConnection("redis://h:1/x")).toThrow(`--queue "redis://h:1/x": the database "x" is not a number`);
    expect(() => queueConnection("not a url")).toThrow(`--queue "not a url" is not a URL`);
  });
});

describe("the --queue flags", () => {
  test("are refused where they cannot work, naming the flag", async () => {
    const build = ["--model", "fixtures/tiny", "--out", join(dir, "e")];
    await expect(buildEmulatorMain([...build, "--method", "layerdrop", "--queue", "redis://h:1"])).rejects.toThrow(
      "--queue works with --method gradot only, not layerdrop",
    );
    await expect(buildEmulatorMain([...build, "--calibration", "c.txt", "--storage", dir])).rejects.toThrow("--storage needs --queue");
    await expect(buildEmulatorMain([...build, "--calibration", "c.txt", "--keep-slice-files"])).rejects.toThrow("--keep-slice-files needs --queue");
    await expect(buildEmulatorMain([...build, "--calibration", "c.txt", "--queue", "redis://h:1", "--workers", "2"])).rejects.toThrow(
      "--queue runs the calibration on the queue's workers: it cannot be combined with --workers",
    );
    await expect(workerMain(["--queue", "redis://h:1", "--storage", join(dir, "none")])).rejects.toThrow(
      `--storage "${join(dir, "none")}" is not a directory: give the shared directory every worker sees`,
    );
    await expect(workerMain([])).rejects.toThrow("--queue is required (see offtune worker --help)");
    // Nothing listens on port 1: refused at once, not retried forever.
    await expect(workerMain(["--queue", "redis://127.0.0.1:1", "--storage", dir])).rejects.toThrow(
      "Cannot reach Redis at --queue redis://127.0.0.1:1: connect ECONNREFUSED",
    );
    await expect(JobSubmitter.open("redis://127.0.0.1:1")).rejects.toThrow("Cannot reach Redis at --queue redis://127.0.0.1:1");
    const experiment = await experimentOptions(["--model", "fixtures/tiny", "--runs", join(dir, "runs"), "--queue", "localhost:6379"]);
    await expect(runExperiment(experiment)).rejects.toThrow(`--queue "localhost:6379" is not a redis://host:port URL`);
  });
});

describe("block files", () => {
  test("a block's weights and factors come back as they went, row-held factors still row-held; named by their hash", async () => {
    const rows = [{ rows: 2, cols: 3, data: Float32Array.of(1, 2, 3, 4, 5, 6) }, { rows: 1, cols: 3, data: Float32Array.of(-1, 0.5, 7) }];
    const A = denseFactor({ rows: 2, cols: 2, data: Float32Array.of(2, 1, 1, 3) });
    const G = rowFactor(rows, 0.25);
    const g = { rows: 2, cols: 3, data: Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5, Math.fround(1e-7)) };
    const weight = tf.tensor2d(Float32Array.of(1.5, -2, 3, 4.25, 5, 6), [2, 3]);
    const record = {
      model: {} as ModelHandle,
      index: 3,
      role: "middle",
      weights: new Map([["fc1.weight", weight]]),
      stats: new Map([["fc1", { A, G, g, tokens: 3 }]]),
    } as StatsRecord;
    const model = { dir: "/shared/model", sourceHash: "abc", split: { bottom: 1, top: 1 } };
    const settings = { ratio: 0.5, lambdaAttn: 1, lambdaMlp: 2, keepTopFraction: 0.05, selection: "gcs" as const };
    const path = await writeBlockJob(join(dir, "blocks"), record, model, settings);
    expect(basename(path)).toBe(`${createHash("sha256").update(await readFile(path)).digest("hex")}.block`);
    expect(await writeBlockJob(join(dir, "blocks"), record, model, settings)).toBe(path); // same block, same file

    const back = await readBlockJob(path);
    expect([back.index, back.role, back.model, back.settings]).toEqual([3, "middle", model, settings]);
    expect(back.weights.get("fc1.weight")!.shape).toEqual([2, 3]);
    expect(back.weights.get("fc1.weight")!.dataSync()).toEqual(weight.dataSync());
    const f = back.stats.get("fc1")!;
    expect(f.tokens).toBe(3);
    expect(f.g.data).toEqual(g.data);
    expect(f.A.held.kind).toBe("dense");
    expect(f.G.held.kind).toBe("rows");
    expect(f.G.dense().data).toEqual(G.dense().data);
    expect(f.G.columnAbsSums()).toEqual(G.columnAbsSums());
    expect(f.A.dense().data).toEqual(A.dense().data);
    weight.dispose();
    for (const t of back.weights.values()) t.dispose();
  });
});
