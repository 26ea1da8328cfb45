// GradOT's ablation flags through the verbs (docs/METHOD.md §2 "Ablations"):
// build-emulator's checks and tie summary line, experiment's checks and labels.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { main as buildEmulator } from "../../pipelines/build_emulator.ts";
import { experimentOptions } from "../../pipelines/experiment.ts";
import { experimentLabel } from "../../src/loop/experiment.ts";
import { readManifest } from "../../src/io/manifest.ts";
import { initBackend } from "../../src/tensor/backend.ts";

const TINY = "fixtures/tiny"; // OPT, 4 blocks: split 1,1 leaves 2 middle blocks
const CALIBRATION = "fixtures/data/pretrain/calibration.bin";

let root: string;
beforeAll(async () => {
  await initBackend("wasm", true);
  root = await mkdtemp(join(tmpdir(), "offtune-ablations-cli-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const gradot = (out: string, ...flags: string[]) => [
  "--model", TINY, "--split", "1,1", "--calibration", CALIBRATION, "--sequences", "4", "--length", "32", "--out", join(root, out), "--quiet", ...flags,
];

describe("build-emulator's ablation flags", () => {
  test("refuse bad values and combinations before any work, leaving nothing behind", async () => {
    await expect(buildEmulator(gradot("bad", "--lambda", "10", "--lambda-attn", "5"))).rejects.toThrow(
      "--lambda sets both λ_attn and λ_mlp: it cannot be combined with --lambda-attn or --lambda-mlp",
    );
    await expect(buildEmulator(gradot("bad", "--lambda=-1"))).rejects.toThrow(`--lambda expects a number ≥ 0, got "-1"`);
    await expect(buildEmulator(gradot("bad", "--selection", "norm"))).rejects.toThrow(`--selection expects gcs or magnitude, got "norm"`);
    await expect(buildEmulator(gradot("bad", "--only", "mlp"))).rejects.toThrow(`--only expects drd or scp, got "mlp"`);
    await expect(buildEmulator(gradot("bad", "--only", "scp", "--attn-share", "0.3"))).rejects.toThrow("cannot be combined with --attn-share");
    await expect(buildEmulator(gradot("bad", "--only", "drd", "--ratio", "0.5"))).rejects.toThrow(
      /Budget ratio 0.5 \(--ratio\) is unreachable with --only drd for block 0: .*the smallest ratio is 0\.68/,
    );
    expect(await readdir(root)).toEqual([]); // no package, no resumable partial directory
  }, 60_000);

  test("record the variant in the settings and end with the tie summary line", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(await buildEmulator(gradot("scp-mag", "--only", "scp", "--selection", "magnitude", "--lambda", "100"))).toBe(0);
      const lines = log.mock.calls.map((c) => String(c[0]));
      expect(lines.at(-1)).toMatch(/^SCP cut in a tie in [0-2] of 2 blocks, \d+ channels by secondary key \(\d+ by index\)$/);
      log.mockClear();
      expect(await buildEmulator(gradot("drd", "--only", "drd", "--ratio", "0.8"))).toBe(0);
      expect(String(log.mock.calls.at(-1)![0])).toMatch(/^DRD cut in a tie in \d+ of 8 projections, \d+ components by secondary key/);
    } finally {
      log.mockRestore();
    }
    const { settings } = await readManifest(join(root, "scp-mag"));
    expect(settings).toMatchObject({ only: "scp", selection: "magnitude", lambda: 100, lambdaAttn: 100, lambdaMlp: 100 });
  }, 120_000);
});

describe("experiment's ablation flags", () => {
  const base = ["--model", "fixtures/small", "--runs", join(tmpdir(), "offtune-ablations-never-written")];

  test("pass the variant on and refuse a unified λ with a separate one", async () => {
    const o = await experimentOptions([...base, "--lambda", "1000", "--selection", "magnitude", "--only", "scp"]);
    expect(o).toMatchObject({ lambda: 1000, selection: "magnitude", only: "scp" });
    await expect(experimentOptions([...base, "--lambda", "1000", "--lambda-mlp", "10"])).rejects.toThrow(
      "--lambda sets both λ_attn and λ_mlp",
    );
    await expect(experimentOptions([...base, "--only", "attention"])).rejects.toThrow(`--only expects drd or scp, got "attention"`);
  });

  test("name the variant in the default label, so report rows do not collide", () => {
    const gradot = { method: "gradot" as const, ratios: [0.5] };
    expect(experimentLabel(gradot, 0.5)).toBe("gradot-r0.5");
    expect(experimentLabel({ ...gradot, selection: "gcs" }, 0.5)).toBe("gradot-r0.5");
    expect(experimentLabel({ ...gradot, selection: "magnitude" }, 0.5)).toBe("gradot-mag-r0.5");
    expect(experimentLabel({ ...gradot, only: "drd" }, 0.8)).toBe("gradot-drd-r0.8");
    expect(experimentLabel({ ...gradot, lambda: 1000 }, 0.5)).toBe("gradot-l1000-r0.5");
    expect(experimentLabel({ ...gradot, selection: "magnitude", only: "scp", lambda: 0 }, 0.5)).toBe("gradot-mag-scp-l0-r0.5");
    expect(experimentLabel({ method: "crash", ratios: [0.5], selection: "magnitude" }, 0.5)).toBe("crash-r0.5");
    // A given label is the row's; with several ratios, the rows' prefix.
    expect(experimentLabel({ ...gradot, label: "mine", selection: "magnitude" }, 0.5)).toBe("mine");
    expect(experimentLabel({ ...gradot, ratios: [0.3, 0.5], label: "mine" }, 0.3)).toBe("mine-r0.3");
  });
});
