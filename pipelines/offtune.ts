#!/usr/bin/env -S npx tsx
/**
 * The `offtune` command line: `offtune <verb> [flags]`. Each verb is a module
 * of `pipelines/` exporting `help` and `main(argv)`, so every verb is also a
 * script of its own (and a Deno task). Run as `npm run offtune -- <verb>` or
 * `deno task offtune <verb>`.
 *
 * @module
 */
import process from "node:process";
import { takeBlasFlag } from "../src/cli/blas_flag.ts";
import { earlyCalibrationThreads } from "../src/cli/early_threads.ts";

/** What the dispatcher starts for a verb before loading it (src/cli/early_threads.ts). */
type Early = ReturnType<typeof earlyCalibrationThreads>;

/**
 * A CLI verb: its help text and its entry point (returns the exit code);
 * `early` is what the dispatcher started for it before loading it (a
 * verb that takes none ignores it).
 */
export interface Verb {
  help: string;
  main(argv: string[], early?: Early): Promise<number | void>;
}

/**
 * The verbs: a summary, the module to load, and what to start before
 * loading it (`build-emulator --workers n`: its pool's threads,
 * src/cli/early_threads.ts), which the dispatcher closes once the verb returns.
 */
const verbs: Record<string, { summary: string; load: () => Promise<Verb>; early?: (argv: string[]) => Early }> = {
  inspect: {
    summary: "print a checkpoint's architecture, blocks, parameters and dtypes",
    load: () => import("./inspect.ts"),
  },
  eval: {
    summary: "zero-shot multiple choice (acc, acc_norm, 95% CI) and perplexity",
    load: () => import("./eval.ts"),
  },
  tune: {
    summary: "tune the adapter blocks of an emulator (or model) on a task",
    load: () => import("./tune.ts"),
  },
  "plug-in": {
    summary: "plug a tuned adapter into the original model (Hugging Face layout)",
    load: () => import("./plug_in.ts"),
  },
  "full-ft": {
    summary: "fine-tune the whole original model on a task (the reference)",
    load: () => import("./full_ft.ts"),
  },
  experiment: {
    summary: "the offsite-tuning loop for GradOT, OT LayerDrop or CRaSh: emulator, adapters, evaluations, results",
    load: () => import("./experiment.ts"),
  },
  demo: {
    summary: "the loop on the shipped fixtures, sized for minutes, with its report",
    load: () => import("./demo.ts"),
  },
  "build-emulator": {
    summary: "compress a checkpoint into a GradOT, OT LayerDrop or CRaSh emulator package (Arrow shards)",
    load: () => import("./build_emulator.ts"),
    early: earlyCalibrationThreads,
  },
  worker: {
    summary: "serve the jobs of experiment/build-emulator --queue (Redis) on this machine",
    load: () => import("./worker.ts"),
  },
  "gradot-block": {
    summary: "score and compress one GradOT block from a .block file (a worker's job)",
    load: () => import("./gradot_block.ts"),
  },
  "gradot-slice": {
    summary: "run one calibration slice of a GradOT build from a .slice file (a worker's job)",
    load: () => import("./gradot_slice.ts"),
  },
  report: {
    summary: "build the offsite-tuning table, report.json and plots from a runs directory",
    load: () => import("./report.ts"),
  },
  "sweep-gradot": {
    summary: "sweep GradOT's λ_attn, λ_mlp by adapter-gradient cosine and emulator NLL",
    load: () => import("./sweep_gradot.ts"),
  },
  "plot-training": {
    summary: "draw a pretraining run's loss curve (SVG) from its log.jsonl",
    load: () => import("./plot_training.ts"),
  },
  bench: {
    summary: "measure kernels, linear algebra and model throughput",
    load: () => import("./bench.ts"),
  },
  "build-fixtures": {
    summary: "rebuild the tokenizer, text splits and tasks in fixtures/ from their packages",
    load: () => import("./build_fixtures.ts"),
  },
  pretrain: {
    summary: "pretrain an OPT model on a token stream (data-parallel)",
    load: () => import("./pretrain.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(verbs).map((v) => v.length));
  const lines = Object.entries(verbs).map(([name, v]) =>
    `  ${name.padEnd(width)}  ${v.summary}`
  );
  return [
    "offtune: offsite-tuning of language models (GradOT and baselines)",
    "",
    "Usage: offtune <verb> [flags]     (offtune <verb> --help for a verb's flags)",
    "",
    "Verbs:",
    ...lines,
    "",
    "Global flag: --blas openblas|cuda (anywhere; sets OFFTUNE_BLAS): the BLAS of the large",
    "float32 products, OpenBLAS by default; cuda runs them on cuBLAS (docs/DISTRIBUTED.md).",
    "",
    "Environment: OFFTUNE_BACKEND=auto|tensorflow|wasm|cpu, OFFTUNE_BLAS=openblas|cuda,",
    "OFFTUNE_CUDA_LIBS=<dir>[:<dir>] (where libcudart and libcublas are), OFFTUNE_DEBUG=1 for stack traces.",
  ].join("\n");
}

/** Runs the CLI on `argv` (without the runtime and script) and returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  let args: string[];
  try {
    const taken = takeBlasFlag(argv);
    if (taken.blas) process.env.OFFTUNE_BLAS = taken.blas;
    args = taken.argv;
  } catch (error) {
    console.error(`offtune: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  // Own keys only: "toString" or "__proto__" must be unknown verbs, not Object.prototype's members.
  const entry = Object.hasOwn(verbs, name) ? verbs[name] : undefined;
  if (!entry) {
    console.error(`offtune: unknown verb "${name}"\n\n${usage()}`);
    return 2;
  }
  const early = entry.early?.(rest);
  try {
    const verb = await entry.load();
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(verb.help);
      return 0;
    }
    const { selectedBlasSummary } = await import("../mod.ts"); // loaded already by the verb: imported late, so nothing delays `early`
    const blas = selectedBlasSummary(); // loads cuBLAS when asked for, failing before any work
    if (blas) console.error(`offtune: ${blas}`);
    return (await verb.main(rest, early)) ?? 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`offtune ${name}: ${message}`);
    if (process.env.OFFTUNE_DEBUG && error instanceof Error) console.error(error.stack);
    return 1;
  } finally {
    await early?.close();
  }
}

/**
 * Prints an error that escaped every verb's handling (a bug, or a failure in
 * a callback outside the verb's promise chain) as our message and our stack,
 * then exits 1. The wasm backend's own listeners, which would print its
 * minified source instead, are removed when it starts (src/tensor/backend.ts).
 */
export function reportUncaught(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`offtune: uncaught error: ${message}`);
  if (error instanceof Error && error.stack) console.error(error.stack);
  process.exit(1);
}

if (import.meta.main ?? process.argv[1]?.endsWith("offtune.ts")) {
  process.on("uncaughtException", reportUncaught);
  process.on("unhandledRejection", reportUncaught);
  process.exitCode = await run(process.argv.slice(2));
}
