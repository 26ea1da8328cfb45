import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { benchLinalg } from "../../src/bench/linalg.ts";
import { lapackAvailable } from "../../src/linalg/gemm.ts";
import { openblasCorename } from "../../src/linalg/lapack_ffi.ts";
import { CORE_ADVICE_SHOWN_ENV, cpuFlags, openblasCoreAdvice } from "../../src/linalg/openblas_core.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A /proc/cpuinfo of two processors with `flags`, in the kernel's layout. */
const cpuinfo = (flags: string) =>
  [0, 1].map((n) =>
    `processor\t: ${n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n` +
    `flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 ${flags}\nbogomips\t: 4000.00\n`
  ).join("\n");

const AVX512 = "avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 amx_tile";

describe("openblasCoreAdvice", () => {
  test("Prescott on a CPU with AVX-512 (the H200 machine's case): SkylakeX, named with the kernel and the flags", () => {
    const advice = openblasCoreAdvice("Prescott", () => cpuinfo(AVX512), {});
    expect(advice).toContain("picked its Prescott kernel, which uses no AVX2");
    expect(advice).toContain("avx2 and avx512f");
    expect(advice).toContain("OPENBLAS_CORETYPE=SkylakeX npm run offtune");
    expect(advice).not.toContain("Haswell");
  });

  test("AVX2 with FMA but no AVX-512: Haswell", () => {
    const advice = openblasCoreAdvice("Core2", () => cpuinfo("avx avx2 fma"), {});
    expect(advice).toContain("picked its Core2 kernel");
    expect(advice).toContain("OPENBLAS_CORETYPE=Haswell");
  });

  test("avx512f without the rest of Skylake-X's set (Xeon Phi): Haswell, not SkylakeX", () => {
    const advice = openblasCoreAdvice("Nehalem", () => cpuinfo("avx avx2 fma avx512f avx512cd avx512er avx512pf"), {});
    expect(advice).toContain("OPENBLAS_CORETYPE=Haswell");
  });

  test("the AVX-only kernels count as generic on an AVX2 CPU", () => {
    for (const core of ["Sandybridge", "Bulldozer", "Excavator"]) {
      expect(openblasCoreAdvice(core, () => cpuinfo("avx avx2 fma"), {})).toContain("OPENBLAS_CORETYPE=Haswell");
    }
  });

  test("nothing for a kernel that uses AVX2 or AVX-512", () => {
    for (const core of ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"]) {
      expect(openblasCoreAdvice(core, () => cpuinfo(AVX512), {})).toBeUndefined();
    }
  });

  test("/proc/cpuinfo is not read when the kernel or the environment already answers", () => {
    const unread = () => {
      throw new Error("/proc/cpuinfo read");
    };
    expect(openblasCoreAdvice("SkylakeX", unread, {})).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", unread, { OPENBLAS_CORETYPE: "Haswell" })).toBeUndefined();
  });

  test("nothing when the generic kernel is all the CPU can run", () => {
    expect(openblasCoreAdvice("Prescott", () => cpuinfo("avx"), {})).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", () => cpuinfo("avx avx2"), {})).toBeUndefined(); // AVX2 without FMA
  });

  test("nothing without a kernel name (another BLAS) or without x86 flags (no /proc/cpuinfo, an ARM one)", () => {
    expect(openblasCoreAdvice(undefined, () => cpuinfo(AVX512), {})).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", () => "", {})).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", () => "processor\t: 0\nFeatures\t: fp asimd avx2\n", {})).toBeUndefined();
  });

  test("nothing once OPENBLAS_CORETYPE is set or the advice was shown; an empty OPENBLAS_CORETYPE counts as unset", () => {
    expect(openblasCoreAdvice("Prescott", () => cpuinfo(AVX512), { OPENBLAS_CORETYPE: "Prescott" })).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", () => cpuinfo(AVX512), { [CORE_ADVICE_SHOWN_ENV]: "1" })).toBeUndefined();
    expect(openblasCoreAdvice("Prescott", () => cpuinfo(AVX512), { OPENBLAS_CORETYPE: "" })).toContain("SkylakeX");
  });
});

describe("cpuFlags", () => {
  test("the first processor's flags, as whole words", () => {
    const flags = cpuFlags(cpuinfo("avx2 fma"));
    expect(flags.has("avx2")).toBe(true);
    expect(flags.has("sse4_2")).toBe(true);
    expect(flags.has("avx")).toBe(false);
    expect(flags.has("GenuineIntel")).toBe(false);
  });
});

const skip = lapackAvailable() && openblasCorename() !== undefined ? "" : "needs Debian libopenblas0";
const hostFlags = existsSync("/proc/cpuinfo") ? cpuFlags(readFileSync("/proc/cpuinfo", "utf8")) : new Set<string>();
const avx2 = hostFlags.has("avx2") && hostFlags.has("fma");

/** Runs `code` (an ES module) under Node with tsx, in the repository, with OPENBLAS_CORETYPE=Prescott. */
const withPrescott = (code: string) =>
  spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, OPENBLAS_CORETYPE: "Prescott", [CORE_ADVICE_SHOWN_ENV]: "" },
    timeout: 60_000,
  });

describe.skipIf(skip !== "")(`the loader reads OpenBLAS's kernel${skip ? ` (skipped: ${skip})` : ""}`, () => {
  test("the kernel OPENBLAS_CORETYPE forces, and no warning when it is set", () => {
    const run = withPrescott("const m = await import('./src/linalg/lapack_ffi.ts'); console.log(m.openblasCorename())");
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe("Prescott");
    expect(run.stderr).not.toContain("OpenBLAS picked");
  });

  test("bench linalg's first row names the kernel", async () => {
    const rows = await benchLinalg({
      lapackSizes: [16], jsSizes: [8], eighSizes: [8], gemmSize: 16, gemmJsSize: 8, repeats: 1, tfBackend: "cpu",
    });
    const forced = process.env.OPENBLAS_CORETYPE;
    const why = forced ? `as OPENBLAS_CORETYPE=${forced} asks` : "picked by OpenBLAS for this CPU";
    expect(rows[0]).toMatchObject({ name: "openblas kernel", note: `${openblasCorename()}, ${why}` });
  });

  test.skipIf(!avx2)("one warning on stderr when the kernel is generic and OPENBLAS_CORETYPE is not in process.env", () => {
    // OpenBLAS reads OPENBLAS_CORETYPE from the C environment when it loads; a plain copy of
    // process.env without it makes the check see it unset, as on a machine where OpenBLAS guessed.
    const run = withPrescott(
      "process.env = { ...process.env }; delete process.env.OPENBLAS_CORETYPE;" +
        "const m = await import('./src/linalg/lapack_ffi.ts'); m.loadLinalgLibrary(); m.loadLinalgLibrary();" +
        `console.log(process.env.${CORE_ADVICE_SHOWN_ENV})`,
    );
    expect(run.status).toBe(0);
    expect(run.stderr.match(/offtune: OpenBLAS picked its Prescott kernel/g)).toHaveLength(1);
    expect(run.stderr).toMatch(/OPENBLAS_CORETYPE=(SkylakeX|Haswell) npm run offtune/);
    expect(run.stdout.trim()).toBe("1");
  });
});
