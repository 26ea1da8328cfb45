// kill -9 at seeded random points of build-emulator (GradOT and ot-distill), tune, full-ft and
// pretrain on fixtures/tiny, then the same command again (with --resume
// where the verb asks for it, docs/GUARANTEES.md "What resumes"): the
// output must equal an uninterrupted run's byte for byte (the manifest's
// createdAt and pretraining's wall-clock fields aside), and no temporary
// may be left beside it.
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { main as fullFt } from "../../pipelines/full_ft.ts";
import { main as pretrain } from "../../pipelines/pretrain.ts";
import { main as tune } from "../../pipelines/tune.ts";
import { createRng } from "../../src/data/random.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { initBackend } from "../../src/tensor/backend.ts";
import { fullTuneStatePath } from "../../src/train/full_ft_state.ts";
import { partialDirOf } from "../../src/train/tune.ts";
import { sleep, spawnCli } from "./spawn_cli.ts";

const TINY = "fixtures/tiny"; // OPT, 4 blocks
const CALIBRATION = "fixtures/data/pretrain/calibration.bin";

let root: string;
let data: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-kill-resume-"));
  data = join(root, "data");
  await mkdir(data);
  await copyFile(CALIBRATION, join(data, "train.bin"));
  await copyFile("fixtures/data/pretrain/valid.bin", join(data, "valid.bin"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Every file of `dir` but `skip` by content hash. */
async function fileHashes(dir: string, skip: string[] = []): Promise<Record<string, string>> {
  const names = (await readdir(dir)).filter((n) => !skip.includes(n)).sort();
  return Object.fromEntries(await Promise.all(names.map(async (n) => [n, sha(await readFile(join(dir, n)))])));
}

/** A package: its shards by hash and its manifest without createdAt. */
async function packageContent(dir: string) {
  const { createdAt: _, ...manifest } = await readManifest(dir);
  return { files: await fileHashes(dir, ["manifest.msgpack"]), manifest };
}

/** The data section of a safetensors file (its header holds wall-clock metadata). */
async function tensorBytesHash(path: string): Promise<string> {
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  return sha(bytes.subarray(8 + headerLength));
}

/** One verb under test: its command, how a rerun resumes, and what must come out equal. */
interface VerbCase {
  verb: string;
  /** The test's name, when not the verb's. */
  name?: string;
  main: (argv: string[]) => Promise<number>;
  args: (out: string) => string[];
  /** Whether the rerun needs --resume (the verb saved a state to continue). */
  needsResume: (out: string) => Promise<boolean>;
  /** Whether the output is complete (a kill landed after the work). */
  finished: (out: string) => Promise<boolean>;
  content: (out: string) => Promise<unknown>;
  /** Kills tried (fewer when one lands after the work). */
  kills: number;
}

const tuneFlags = ["--task", "lastword_cloze", "--limit", "24", "--epochs", "3", "--batch", "4"];

const CASES: VerbCase[] = [
  {
    verb: "build-emulator",
    kills: 3,
    main: buildEmulator,
    args: (out) => ["--model", TINY, "--calibration", CALIBRATION, "--split", "1,1", "--sequences", "16", "--length", "32", "--out", out],
    needsResume: async () => false, // a GradOT build finds its <out>.partial-<key> itself
    finished: (out) => exists(out),
    content: packageContent,
  },
  {
    verb: "build-emulator",
    name: "build-emulator --workers 2", // blocks compressed on the pool while the backward goes on
    kills: 3,
    main: buildEmulator,
    args: (out) => [
      "--model", TINY, "--calibration", CALIBRATION, "--split", "1,1", "--sequences", "16", "--length", "32", "--chunk", "4",
      "--workers", "2", "--out", out,
    ],
    needsResume: async () => false,
    finished: (out) => exists(out),
    content: packageContent,
  },
  {
    verb: "tune",
    kills: 2,
    main: tune,
    args: (out) => ["--emulator", TINY, "--split", "1,1", ...tuneFlags, "--out", out],
    needsResume: async (out) =>
      (await exists(join(out, "tune_state.safetensors"))) || (await exists(join(partialDirOf(out), "tune_state.safetensors"))),
    finished: async (out) => (await exists(join(out, "manifest.msgpack"))) && !(await exists(join(out, "tune_state.safetensors"))),
    content: packageContent,
  },
  {
    verb: "full-ft",
    kills: 2,
    main: fullFt,
    args: (out) => ["--model", TINY, ...tuneFlags, "--out", out],
    needsResume: (out) => exists(fullTuneStatePath(out)),
    finished: async (out) => (await exists(join(out, "config.json"))) && !(await exists(fullTuneStatePath(out))),
    content: (out) => fileHashes(out),
  },
  {
    verb: "pretrain",
    kills: 2,
    main: pretrain,
    args: (out) => [
      "--data", data, "--out", out, "--layers", "2", "--hidden", "32", "--heads", "2", "--ffn", "64", "--ctx", "32",
      "--steps", "24", "--batch", "4", "--workers", "0", "--save-every", "4", "--eval-every", "8", "--eval-windows", "2",
    ],
    needsResume: (out) => exists(join(out, "train_state.safetensors")),
    finished: async (out) => {
      const log = await readFile(join(out, "log.jsonl"), "utf8").catch(() => "");
      return log.includes(`"step":24,`) && (await exists(join(out, "train_state.safetensors")));
    },
    content: async (out) => {
      const log = (await readFile(join(out, "log.jsonl"), "utf8")).trim().split("\n").map((line) => {
        const { seconds: _s, tokens_per_s: _t, ...rest } = JSON.parse(line);
        return rest;
      });
      return {
        files: await fileHashes(out, ["log.jsonl", "train_state.safetensors"]),
        state: await tensorBytesHash(join(out, "train_state.safetensors")),
        log,
      };
    },
  },
  {
    verb: "build-emulator",
    name: "build-emulator --method ot-distill",
    kills: 3,
    main: buildEmulator,
    args: (out) => [
      "--method", "ot-distill", "--model", TINY, "--calibration", CALIBRATION, "--split", "1,1", "--sequences", "8", "--length", "32",
      "--distill-steps", "30", "--distill-batch", "2", "--out", out,
    ],
    needsResume: async () => false, // the build finds its <out>.ot-distill-state.safetensors itself
    finished: (out) => exists(out),
    content: packageContent,
  },
];

/** Names beside `out` that belong to it but are not it: temporaries and partial builds. */
async function leftovers(out: string): Promise<string[]> {
  return (await readdir(dirname(out))).filter((n) => n.startsWith(`${basename(out)}.`));
}

describe("kill -9, then the same command again", () => {
  for (const [k, c] of CASES.entries()) {
    test(`${c.name ?? c.verb}: output equals an uninterrupted run's, byte for byte`, async () => {
      const reference = join(root, `case-${k}-${c.verb}-reference`); // one directory per case: two cases run build-emulator
      const started = performance.now();
      expect(await c.main([...c.args(reference), "--quiet"])).toBe(0);
      const duration = performance.now() - started; // of the work, the backend being up

      const out = join(root, `case-${k}-${c.verb}-killed`);
      const rng = createRng(20 + k);
      const killedMidway: number[] = [];
      // Within the first 60% of an uninterrupted run's time: a spawned run may be quicker than
      // the in-process reference, and a kill after the work tests nothing.
      let window = 0.6;
      for (let attempt = 0; attempt < c.kills && !(await c.finished(out)); attempt++) {
        const resume = (await c.needsResume(out)) ? ["--resume"] : [];
        const cli = spawnCli([c.verb, ...c.args(out), ...resume]);
        await cli.started;
        const delay = rng.next() * window * duration;
        await sleep(delay);
        cli.child.kill("SIGKILL");
        const { code, signal } = await cli.exited;
        if (await c.finished(out)) {
          if (killedMidway.length > 0) break; // resumed and finished: nothing left to kill
          // The kill came after the work, before any landed inside it: start over, sooner.
          await rm(out, { recursive: true, force: true });
          window /= 2;
          continue;
        }
        expect(signal, `exit ${code}: ${cli.stderr()}`).toBe("SIGKILL");
        killedMidway.push(Math.round(delay));
      }
      expect(killedMidway.length, `no kill landed inside the work (${duration.toFixed(0)} ms)`).toBeGreaterThan(0);
      if (!(await c.finished(out))) {
        const resume = (await c.needsResume(out)) ? ["--resume"] : [];
        expect(await c.main([...c.args(out), ...resume, "--quiet"])).toBe(0);
      }
      expect(await c.content(out)).toEqual(await c.content(reference));
      expect(await leftovers(out)).toEqual([]);
    }, 120_000);
  }
});
