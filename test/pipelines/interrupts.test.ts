// SIGTERM to a build and to an experiment, and stale temporaries of dead
// processes (docs/GUARANTEES.md "Interrupts", "Stale temporaries").
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readManifest } from "../../src/io/manifest.ts";
import {
  ACTIVATIONS_PREFIX,
  removeStaleActivationStores,
  removeStaleSiblings,
  removeStaleTemporariesIn,
} from "../../src/io/stale_temps.ts";
import { alive, sleep, spawnCli } from "./spawn_cli.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-interrupts-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const exists = (path: string) => stat(path).then(() => true, () => false);

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  expect(alive(child.pid!)).toBe(false);
  return child.pid!;
}

/** The `offtune` processes whose parent is `pid` (Linux /proc; tsx's esbuild service is another child). */
async function verbChildrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // state, ppid, …
    if (Number(fields[1]) !== pid) continue;
    const command = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    if (command.includes("offtune.ts")) found.push(Number(name));
  }
  return found;
}

describe("stale temporaries", () => {
  test("those of a dead pid are removed, those of a live one kept", async () => {
    const dead = await deadPid();
    const live = process.pid;
    const out = join(root, "stale", "emulator");
    await mkdir(out, { recursive: true });
    const names = [
      `emulator.tmp-${dead}-0a1b2c3d`,
      `emulator.tmp-${live}-0a1b2c3d`,
      `emulator.old-${dead}-4e5f6a7b`,
      `emulator.tmp-${dead}-0a1b2c3d.tmp-${dead}-5e6f7a8b`, // a temporary of a temporary
      `emulator.tmp-${dead}-1a1b2c3d.old-${dead}-5e6f7a8b`,
      `emulator.tmp-${dead}-2a1b2c3d.tmp-${live}-5e6f7a8b`, // its inner writer lives
      `emulator.tmp-${dead}`, // not a temporary name of ours
      `other.tmp-${dead}-0a1b2c3d`,
    ];
    for (const n of names) await mkdir(join(dirname(out), n));
    const removed = removeStaleSiblings(out);
    expect(removed.map((p) => basename(p)).sort()).toEqual([
      `emulator.old-${dead}-4e5f6a7b`,
      `emulator.tmp-${dead}-0a1b2c3d`,
      `emulator.tmp-${dead}-0a1b2c3d.tmp-${dead}-5e6f7a8b`,
      `emulator.tmp-${dead}-1a1b2c3d.old-${dead}-5e6f7a8b`,
    ].sort());
    expect((await readdir(dirname(out))).sort()).toEqual(
      [
        "emulator",
        `emulator.tmp-${dead}`,
        `emulator.tmp-${live}-0a1b2c3d`,
        `emulator.tmp-${dead}-2a1b2c3d.tmp-${live}-5e6f7a8b`,
        `other.tmp-${dead}-0a1b2c3d`,
      ].sort(),
    );

    // An .old- version is all that is left when the package itself is missing: it stays.
    const lone = join(root, "stale", "lone");
    await mkdir(`${lone}.old-${dead}-12345678`);
    expect(removeStaleSiblings(lone)).toEqual([]);

    // Inside a directory that outlives its writers (a resumable build's).
    const inside = join(root, "inside");
    await mkdir(inside);
    for (const n of ["block-0000.arrow", `block-0000.arrow.tmp-${dead}-0a1b2c3d`, `progress.json.tmp-${live}-0a1b2c3d`]) {
      await writeFile(join(inside, n), "x");
    }
    expect(removeStaleTemporariesIn(inside).map((p) => basename(p))).toEqual([`block-0000.arrow.tmp-${dead}-0a1b2c3d`]);
    expect((await readdir(inside)).sort()).toEqual(["block-0000.arrow", `progress.json.tmp-${live}-0a1b2c3d`]);

    const stores = join(root, "stores");
    await mkdir(join(stores, `${ACTIVATIONS_PREFIX}${dead}-AbC123`), { recursive: true });
    await mkdir(join(stores, `${ACTIVATIONS_PREFIX}${live}-XyZ789`));
    await mkdir(join(stores, `${ACTIVATIONS_PREFIX}LegacY`)); // no pid: never ours to judge
    expect(removeStaleActivationStores(stores).map((p) => basename(p))).toEqual([`${ACTIVATIONS_PREFIX}${dead}-AbC123`]);
    expect((await readdir(stores)).sort()).toEqual([`${ACTIVATIONS_PREFIX}${live}-XyZ789`, `${ACTIVATIONS_PREFIX}LegacY`].sort());
  });
});

describe("SIGTERM", () => {
  test("stops build-emulator within seconds, exit 143, no output and no temporaries left", async () => {
    const out = join(root, "term", "emulator");
    await mkdir(dirname(out), { recursive: true });
    const cli = spawnCli([
      "build-emulator", "--model", "fixtures/small", "--calibration", "fixtures/data/pretrain/calibration.bin",
      "--sequences", "32", "--length", "64", "--out", out,
    ]);
    await cli.started;
    // Wait until the build is under way: its resumable directory exists.
    const dir = dirname(out);
    const partial = async () => (await readdir(dir)).some((n) => n.startsWith("emulator.partial-"));
    for (let i = 0; i < 200 && !(await partial()); i++) await sleep(50);
    expect(await partial()).toBe(true);
    await sleep(1000);
    const sent = performance.now();
    cli.child.kill("SIGTERM");
    const { code } = await cli.exited;
    const seconds = (performance.now() - sent) / 1000;
    expect(code, cli.stderr()).toBe(143);
    expect(cli.stderr()).toContain(`build-emulator: stopped by SIGTERM; temporary files removed, "${out}" untouched`);
    expect(seconds).toBeLessThan(10);
    expect(await readdir(dir)).toEqual([]);
    const stores = (await readdir(tmpdir())).filter((n) => n.startsWith(`${ACTIVATIONS_PREFIX}${cli.child.pid}-`));
    expect(stores).toEqual([]);
  }, 120_000);

  test("stops tune at the next step with a checkpoint, exit 143", async () => {
    const out = join(root, "tune", "adapter");
    const cli = spawnCli([
      "tune", "--emulator", "fixtures/tiny", "--split", "1,1", "--task", "lastword_cloze", "--limit", "24",
      "--epochs", "3", "--batch", "4", "--out", out,
    ]);
    // The first epoch's checkpoint shows the loop is running (6 steps an epoch, 18 in all).
    const state = join(out, "tune_state.safetensors");
    for (let i = 0; i < 1200 && !(await exists(state)); i++) await sleep(25);
    cli.child.kill("SIGTERM");
    const { code } = await cli.exited;
    expect(code, cli.stderr()).toBe(143);
    const { extra } = await readManifest(out);
    expect(extra?.step).toBeGreaterThanOrEqual(6);
    expect(extra?.step).toBeLessThan(18);
    expect(await exists(state)).toBe(true);
  }, 120_000);

  test("to experiment is passed on to its children, and it exits 143 only once they are gone", async () => {
    const runs = join(root, "experiment");
    const cli = spawnCli([
      "experiment", "--model", "fixtures/tiny", "--runs", runs, "--tasks", "lastword_cloze", "--seeds", "0",
      "--train-limit", "8", "--eval-limit", "8", "--epochs", "1", "--sequences", "8", "--no-full-ft", "--jobs", "1",
    ]);
    let children: number[] = [];
    for (let i = 0; i < 600 && children.length === 0; i++) {
      await sleep(50);
      children = await verbChildrenOf(cli.child.pid!);
    }
    expect(children.length).toBeGreaterThan(0);
    await sleep(500);
    const stillRunning = children.filter(alive);
    expect(stillRunning.length).toBeGreaterThan(0);
    cli.child.kill("SIGTERM");
    const { code } = await cli.exited;
    // Checked as soon as the parent is gone: no child outlived it.
    expect(stillRunning.filter(alive)).toEqual([]);
    expect(code, cli.stderr()).toBe(143);
    expect(await exists(join(runs, "_work", "gradot-r0.5-emulator"))).toBe(false);
  }, 120_000);
});
