// The resumable directory of a build (src/io/build_resume.ts): keyed
// by its inputs, owned by one live process, its recorded shards verified.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ResumableBuild } from "../../src/io/build_resume.ts";
import type { ModelHandle } from "../../src/records/records.ts";

// What the directory needs of a model: where its weight files are and its source hash.
const model = { source: "fixtures/tiny", sourceHash: "tiny" } as ModelHandle;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-build-resume-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid!;
}

const shard = (file: string, bytes: number, sha256: string) => ({ file, block: 3, role: "adapter" as const, sha256, bytes });
// sha256 of the 3 bytes "abc"
const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

describe("ResumableBuild", () => {
  test("the same inputs find the same directory with its progress; other inputs another", async () => {
    const out = join(root, "same", "emulator");
    const first = ResumableBuild.open(out, model, { ratio: 0.5 });
    await writeFile(join(first.dir, "block-0003.arrow"), "abc");
    first.recordBlock({ index: 3, role: "adapter", params: 1, shard: shard("block-0003.arrow", 3, ABC) });
    first.recordLoss(2.5);

    const again = ResumableBuild.open(out, model, { ratio: 0.5 });
    expect(again.dir).toBe(first.dir);
    expect(again.isDone(3)).toBe(true);
    expect(again.isDone(2)).toBe(false);
    expect(again.loss).toBe(2.5);

    const other = ResumableBuild.open(out, model, { ratio: 0.25 });
    expect(other.dir).not.toBe(first.dir);
    expect(other.blocks).toEqual([]);
    // Both are this process's: neither removed the other.
    expect((await readdir(join(root, "same"))).length).toBe(2);
  });

  test("whenWritten runs every callback waiting on a block, in order, once its shard is recorded; at once after", async () => {
    const build = ResumableBuild.open(join(root, "waiting", "emulator"), model, { ratio: 0.5 });
    const ran: string[] = [];
    build.whenWritten(3, () => ran.push("activations"));
    build.whenWritten(3, () => ran.push("slice files"));
    build.whenWritten(2, () => ran.push("block 2"));
    expect(ran).toEqual([]);
    await writeFile(join(build.dir, "block-0003.arrow"), "abc");
    build.recordBlock({ index: 3, role: "adapter", params: 1, shard: shard("block-0003.arrow", 3, ABC) });
    expect(ran).toEqual(["activations", "slice files"]);
    build.whenWritten(3, () => ran.push("later"));
    expect(ran).toEqual(["activations", "slice files", "later"]);
  });

  test("a recorded shard that does not verify starts the build over", async () => {
    const out = join(root, "corrupt", "emulator");
    const first = ResumableBuild.open(out, model, {});
    await writeFile(join(first.dir, "block-0003.arrow"), "abd");
    first.recordBlock({ index: 3, role: "adapter", params: 1, shard: shard("block-0003.arrow", 3, ABC) });
    const notices: string[] = [];
    const again = ResumableBuild.open(out, model, {}, (m) => notices.push(m));
    expect(again.blocks).toEqual([]);
    expect(await readdir(again.dir)).not.toContain("block-0003.arrow");
    expect(notices.join("\n")).toContain(`shard "block-0003.arrow" in "${again.dir}" does not match its record; starting the build over`);
  });

  test("a live owner's directory is refused; a dead owner's of other inputs is removed", async () => {
    const out = join(root, "owners", "emulator");
    const live = ResumableBuild.open(out, model, { run: "live" });
    await writeFile(join(live.dir, "owner"), "1"); // init: alive, and not this process
    expect(() => ResumableBuild.open(out, model, { run: "live" })).toThrow(
      `Cannot build "${out}": process 1 is building it now in "${live.dir}"`,
    );

    const stale = join(root, "owners", "emulator.partial-0123456789abcdef");
    await mkdir(stale);
    await writeFile(join(stale, "owner"), String(await deadPid()));
    const notices: string[] = [];
    const mine = ResumableBuild.open(out, model, { run: "mine" }, (m) => notices.push(m));
    const left = await readdir(join(root, "owners"));
    expect(left.sort()).toEqual([basename(live.dir), basename(mine.dir)].sort());
    expect(notices).toEqual([`removed "${stale}", the unfinished build of other settings`]);
  });
});
