/**
 * The whole offsite-tuning loop for one method as a library call
 * (`offtune experiment`, `offtune demo`): GradOT,
 * or a baseline of docs/METHOD.md §3 (OT LayerDrop, CRaSh), as the seeds' table
 * measures it (docs/METHOD.md §1, §5), composed from the verbs:
 *
 * 1. the model owner builds the emulator (`build-emulator --method`);
 * 2. zero-shot: the original model (Full ZS) and adapter + emulator (Emulator ZS);
 * 3. per seed and task: the data owner tunes the adapter through the emulator
 *    (`tune`), scored with the emulator (Emulator FT) and plugged into the
 *    original model (Plug-in); the reference fine-tunes the whole original
 *    model (`full-ft`, Full FT) unless `--no-full-ft`;
 * 4. perplexities on held-out text of the original, the emulator and one
 *    plug-in model;
 * 5. one `result.json` per seed under `<runs>/<label>/seed-<n>/`, the layout
 *    `offtune report` reads (docs/REPORT.md).
 *
 * Every step runs in its own process with its log in `<work>/logs/`; the
 * per-task, per-seed steps run `--jobs` at a time (each process is
 * single-threaded: the wasm backend and OpenBLAS at one thread). A SIGINT
 * or SIGTERM is passed on to the running steps (src/cli/run_verb.ts); run
 * again, the experiment continues the build, and the tuning and Full FT
 * runs those steps checkpointed (docs/GUARANTEES.md "What resumes").
 *
 * @module
 */
import { access, mkdir, readFile, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createProgress, PLAIN_INTERVAL_S } from "../cli/progress.ts";
import { runVerb } from "../cli/run_verb.ts";
import { mapConcurrent } from "../distributed/map_concurrent.ts";
import { EVAL_DEFAULTS, type EvalReport, selectTasks } from "../eval/eval_report.ts";
import { listTasks } from "../eval/task_file.ts";
import { readManifest } from "../io/manifest.ts";
import { ownTokenizer } from "../io/tokenizer.ts";
import { FIXTURE_TOKENIZER, refuseFixtureStreamFor } from "../io/tokenizer_for.ts";
import { emulatorMethod, type EmulatorMethod, needsCalibration } from "./build_emulator.ts";
import { type ImportanceEstimator, importanceEstimator } from "../operators/scaleot.ts";
import { checkOutputDir } from "../io/output_dir.ts";
import { inspectCheckpoint } from "../model/inspect.ts";
import { type RunResult, type TaskResult, writeRunResult } from "../report/run_result.ts";
import { fullTuneStatePath } from "../train/full_ft_state.ts";
import { partialDirOf } from "../train/tune.ts";
import { TUNE_STATE_FILE } from "../train/tune_package.ts";

/** The options of one experiment (`offtune experiment`'s flags, parsed; {@link experimentOptions} fills the defaults). */
export interface ExperimentOptions {
  /** The original checkpoint (with its tokenizer.json). */
  model: string;
  /** The runs directory: results, and work files in `<runs>/_work`. */
  runs: string;
  /** The emulator: GradOT's, or a baseline's (OT LayerDrop, CRaSh). */
  method: EmulatorMethod;
  /** Task names (in `tasksDir`). */
  tasks: string[];
  /** Where the tasks are (one directory per task, `listTasks`). */
  tasksDir: string;
  /** Tuning seeds: one result.json each. */
  seeds: number[];
  /** The report row's label (default `<method>-r<ratio>`). */
  label?: string;
  /** The emulator ratio. */
  ratio: number;
  /** GCS λ for attention (GradOT's default when absent). */
  lambdaAttn?: number;
  /** GCS λ for the MLP (GradOT's default when absent). */
  lambdaMlp?: number;
  /** ScaleOT's replace fraction α (from the ratio when absent; docs/METHOD.md §3 "ScaleOT"). */
  replaceFraction?: number;
  /** ScaleOT's rank reduction β (its default when absent). */
  rankReduction?: number;
  /** ScaleOT's importance estimator (`cheap` when absent). */
  importance?: ImportanceEstimator;
  /** ScaleOT's REINFORCE episodes (its default when absent). */
  episodes?: number;
  /** Calibration file (GradOT, CRaSh): text, `.jsonl` of `{"text"}` documents, or a token stream `.bin`. */
  calibration: string;
  /** Held-out text for the perplexities (eval's `--ppl-data`); default eval's. */
  pplData?: string;
  /** Calibration sequences (GradOT, CRaSh). */
  sequences: number;
  /** Training items per task (all when absent). */
  trainLimit?: number;
  /** Test items per task (all when absent). */
  evalLimit?: number;
  /** Tuning epochs. */
  epochs: number;
  /** Tuning learning rate (`tune`'s default when absent). */
  lr?: number;
  /** Also run the Full FT reference. */
  fullFt: boolean;
  /** Steps run at once, each in its own process. */
  jobs: number;
  /** The accuracy the results report. */
  metric: "acc" | "acc_norm";
  /** No progress line. */
  quiet: boolean;
}

const flagIf = (flag: string, value: number | undefined) => (value === undefined ? [] : [flag, String(value)]);

/** `["--resume"]` when one of `states` exists: a checkpoint an interrupted run of the step left. */
async function resumeIf(...states: string[]): Promise<string[]> {
  for (const state of states) if (await stat(state).then(() => true, () => false)) return ["--resume"];
  return [];
}

async function readEval(path: string): Promise<EvalReport> {
  return JSON.parse(await readFile(path, "utf8")) as EvalReport;
}

/** Runs the experiment and returns the written result paths. */
export async function runExperiment(o: ExperimentOptions): Promise<string[]> {
  await checkOutputDir({
    verb: "experiment",
    flag: "runs",
    path: o.runs,
    kind: { holds: "_work", what: "an experiment runs directory (with _work)" },
    inputs: { model: o.model, calibration: needsCalibration(o.method) ? o.calibration : undefined },
  });
  const work = join(o.runs, "_work");
  const logs = join(work, "logs");
  await mkdir(logs, { recursive: true });
  const label = o.label ?? `${o.method}-r${o.ratio}`;
  const emulator = join(work, `${label}-emulator`);
  const pplArgs = ["--ppl", ...(o.pplData === undefined ? [] : ["--ppl-data", o.pplData])];
  const evalArgs = (model: string, tasks: string[], json: string, extra: string[] = []) => [
    "eval", "--model", model, "--tasks", tasks.join(","), "--tasks-dir", o.tasksDir, ...flagIf("--limit", o.evalLimit),
    "--json", json, "--quiet", ...extra,
  ];
  const tuneHyper = [
    "--tasks-dir", o.tasksDir, "--epochs", String(o.epochs), ...flagIf("--lr", o.lr), ...flagIf("--limit", o.trainLimit),
  ];
  // Each step is a process of seconds to many minutes: a plain line as each starts and ends,
  // and one every PLAIN_INTERVAL_S seconds naming the steps still running. The lines are the
  // run's log (to stdout when it is redirected; src/cli/progress.ts).
  const progress = createProgress("experiment", o.quiet, { every: "update", log: true });
  let done = 0;
  const total = 1 + 2 * o.tasks.length + o.seeds.length * o.tasks.length * (o.fullFt ? 4 : 3);
  const running = new Set<string>();
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const step = async (what: string, args: string[]) => {
    running.add(what);
    heartbeat ??= setInterval(
      () => progress.update({ done, total, unit: "steps", detail: `running ${[...running].join(", ")}` }),
      PLAIN_INTERVAL_S * 1000,
    );
    (heartbeat as { unref?: () => void }).unref?.(); // never what keeps the process alive
    progress.update({ done, total, unit: "steps", detail: `started ${what}` });
    try {
      await runVerb(args, join(logs, `${what.replace(/[^\w.-]+/g, "_")}.log`));
    } finally {
      running.delete(what);
      if (running.size === 0) {
        clearInterval(heartbeat);
        heartbeat = undefined;
      }
    }
    done++;
    progress.update({ done, total, unit: "steps", detail: `finished ${what}` });
  };

  const calibrationFlags = needsCalibration(o.method) ? ["--calibration", o.calibration, "--sequences", String(o.sequences)] : [];
  const gradotFlags = o.method === "gradot" ? [...flagIf("--lambda-attn", o.lambdaAttn), ...flagIf("--lambda-mlp", o.lambdaMlp)] : [];
  const scaleotFlags = o.method === "scaleot"
    ? [
      ...flagIf("--replace-fraction", o.replaceFraction),
      ...flagIf("--rank-reduction", o.rankReduction),
      ...(o.importance === undefined ? [] : ["--importance", o.importance]),
      ...flagIf("--episodes", o.episodes),
    ]
    : [];
  await step("build-emulator", [
    "build-emulator", "--method", o.method, "--model", o.model, "--out", emulator, "--ratio", String(o.ratio),
    ...calibrationFlags, ...gradotFlags, ...scaleotFlags, "--quiet",
  ]);
  const manifest = await readManifest(emulator);

  // Zero-shot, one process per model × task (the first task's also measures
  // perplexity), and one unit per seed × task: tune through the emulator,
  // score it there and plugged in, and the Full FT reference. All of them are
  // independent, so they share one pool of --jobs processes.
  const zeroShot = async (which: "full" | "emulator", task: string, ppl: boolean): Promise<EvalReport> => {
    const json = join(work, `${which === "full" ? "full" : `${label}-emulator`}_zs_${task}.json`);
    await step(`${which}-zs ${task}`, evalArgs(which === "full" ? o.model : emulator, [task], json, ppl ? pplArgs : []));
    return readEval(json);
  };
  const tuneUnit = async (seed: number, task: string, measurePpl: boolean) => {
    const seedDir = join(work, `${label}-seed${seed}`);
    const adapter = join(seedDir, "adapters", task);
    await step(`tune ${task} seed ${seed}`, [
      "tune", "--emulator", emulator, "--task", task, "--out", adapter, "--seed", String(seed), ...tuneHyper, "--quiet",
      ...(await resumeIf(join(adapter, TUNE_STATE_FILE), join(partialDirOf(adapter), TUNE_STATE_FILE))),
    ]);
    const emuFt = join(seedDir, `emulator_ft_${task}.json`);
    await step(`emulator-ft ${task} seed ${seed}`, evalArgs(emulator, [task], emuFt, ["--adapter", adapter]));
    const plugIn = join(seedDir, `plug_in_${task}.json`);
    await step(`plug-in ${task} seed ${seed}`, evalArgs(o.model, [task], plugIn, ["--adapter", adapter, ...(measurePpl ? pplArgs : [])]));
    let fullFt: number | null = null;
    if (o.fullFt) {
      const tuned = join(work, `full-ft-seed${seed}`, task);
      const fullFtJson = join(work, `full-ft-seed${seed}`, `full_ft_${task}.json`);
      await step(`full-ft ${task} seed ${seed}`, [
        "full-ft", "--model", o.model, "--task", task, "--out", tuned, "--seed", String(seed), ...tuneHyper, "--quiet",
        ...(await resumeIf(fullTuneStatePath(tuned))),
      ]);
      await runVerb(evalArgs(tuned, [task], fullFtJson), join(logs, `full-ft-eval_${task}_${seed}.log`));
      fullFt = 100 * (await readEval(fullFtJson)).tasks[task][o.metric];
    }
    const plug = await readEval(plugIn);
    return {
      emulatorFt: 100 * (await readEval(emuFt)).tasks[task][o.metric],
      plugIn: 100 * plug.tasks[task][o.metric],
      fullFt,
      plugInPpl: measurePpl ? plug.ppl?.ppl ?? null : null,
    };
  };
  type Unit =
    | { kind: "zs"; which: "full" | "emulator"; task: string; ppl: boolean }
    | { kind: "tune"; seed: number; task: string; measurePpl: boolean };
  const units: Unit[] = [
    ...(["full", "emulator"] as const).flatMap((which) => o.tasks.map((task, t): Unit => ({ kind: "zs", which, task, ppl: t === 0 }))),
    ...o.seeds.flatMap((seed) => o.tasks.map((task, t): Unit => ({ kind: "tune", seed, task, measurePpl: t === 0 }))),
  ];
  type TuneOutcome = Awaited<ReturnType<typeof tuneUnit>>;
  const outcomes = await mapConcurrent<Unit, EvalReport | TuneOutcome>(units, o.jobs, (u) =>
    u.kind === "zs" ? zeroShot(u.which, u.task, u.ppl) : tuneUnit(u.seed, u.task, u.measurePpl)
  );
  const zs = (which: "full" | "emulator", task: string) =>
    outcomes[units.findIndex((u) => u.kind === "zs" && u.which === which && u.task === task)] as EvalReport;
  const pplOf = (which: "full" | "emulator") => zs(which, o.tasks[0]).ppl!.ppl;

  const extra = (manifest.extra ?? {}) as { blocks?: Array<{ role: string; params: number }> };
  const middle = (extra.blocks ?? []).filter((b) => b.role === "middle");
  const middleParams = await originalMiddleParams(o.model, manifest);
  const written: string[] = [];
  for (const seed of o.seeds) {
    const tasks: Record<string, TaskResult> = {};
    let plugInPpl: number | null = null;
    for (const [i, u] of units.entries()) {
      if (u.kind !== "tune" || u.seed !== seed) continue;
      const tuned = outcomes[i] as TuneOutcome;
      const full = zs("full", u.task).tasks[u.task];
      tasks[u.task] = {
        n: full.n,
        full_zs: 100 * full[o.metric],
        emulator_zs: 100 * zs("emulator", u.task).tasks[u.task][o.metric],
        full_ft: tuned.fullFt,
        emulator_ft: tuned.emulatorFt,
        plug_in: tuned.plugIn,
        chance: 100 * full.chance,
      };
      if (u.measurePpl) plugInPpl = tuned.plugInPpl;
    }
    const result: RunResult = {
      formatVersion: 1,
      model: o.model,
      method: manifest.method,
      label,
      seed,
      settings: { ...manifest.settings, epochs: o.epochs, trainLimit: o.trainLimit ?? null, evalLimit: o.evalLimit ?? null },
      emulator_params: middle.reduce((n, b) => n + b.params, 0),
      middle_params: middleParams,
      metric: o.metric,
      tasks,
      ppl: { full: pplOf("full"), emulator: pplOf("emulator"), plug_in: plugInPpl },
    };
    written.push(await writeRunResult(o.runs, result));
  }
  progress.finish(`${written.length} results in ${o.runs}`);
  return written;
}

/** Parameters of the original model's middle blocks (from its headers). */
async function originalMiddleParams(model: string, manifest: { split: { bottom: number; top: number } }): Promise<number> {
  const summary = await inspectCheckpoint(model);
  return summary.parameters.perBlock
    .slice(manifest.split.bottom, summary.layers - manifest.split.top)
    .reduce((a, b) => a + b, 0);
}

const FIXTURE_CALIBRATION = fileURLToPath(new URL("../../fixtures/data/pretrain/calibration.bin", import.meta.url));

/** What an experiment runs unless told otherwise (`offtune experiment --help` lists them). */
export const EXPERIMENT_DEFAULTS = {
  method: "gradot",
  seeds: [0, 1, 2],
  ratio: 0.5,
  calibration: FIXTURE_CALIBRATION,
  sequences: 64,
  epochs: 2,
  fullFt: true,
  metric: "acc",
  quiet: false,
} as const;

/**
 * The options of an experiment on `model` writing to `runs`, with the
 * {@link EXPERIMENT_DEFAULTS} (every task of `tasksDir`, default eval's
 * fixture tasks; one job per core) where `given` has none. Checks the task
 * names against the tasks directory and that the files the steps read exist,
 * so that a typo fails at once, naming the flag, and not minutes later in a
 * step's log.
 *
 * @throws Error for an unknown method, metric, task or ScaleOT importance estimator, or a missing input file
 */
export async function experimentOptions(
  given: Partial<ExperimentOptions> & Pick<ExperimentOptions, "model" | "runs">,
): Promise<ExperimentOptions> {
  const tasksDir = given.tasksDir ?? EVAL_DEFAULTS.tasksDir;
  const o: ExperimentOptions = {
    ...EXPERIMENT_DEFAULTS,
    seeds: [...EXPERIMENT_DEFAULTS.seeds],
    jobs: availableParallelism(),
    ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
    tasksDir,
  } as ExperimentOptions;
  if (o.metric !== "acc" && o.metric !== "acc_norm") throw new Error(`--metric expects acc or acc_norm, got "${o.metric}"`);
  o.method = emulatorMethod(o.method);
  if (o.importance !== undefined) o.importance = importanceEstimator(o.importance);
  o.tasks = selectTasks(given.tasks ? given.tasks.join(",") : "all", await listTasks(tasksDir), tasksDir);
  await checkInputs(o);
  return o;
}

/** Checks that the files the steps read exist (see {@link experimentOptions}). */
async function checkInputs(o: ExperimentOptions): Promise<void> {
  const missing = async (path: string) => !(await access(path).then(() => true, () => false));
  const inputs: Array<[string, string]> = [["--model", join(o.model, "config.json")]];
  if (needsCalibration(o.method)) inputs.push(["--calibration", o.calibration]);
  if (o.pplData !== undefined) inputs.push(["--ppl-data", o.pplData]);
  for (const task of o.tasks) {
    for (const split of ["train", "test"]) inputs.push(["--tasks-dir", join(o.tasksDir, task, `${split}.jsonl`)]);
  }
  for (const [flag, path] of inputs) {
    if (await missing(path)) throw new Error(`${flag}: "${path}" does not exist`);
  }
  // The default streams are fixture-tokenizer ids: meaningless for a model with a tokenizer of its own.
  const tokenizer = (await ownTokenizer(o.model)) ?? FIXTURE_TOKENIZER;
  if (needsCalibration(o.method) && o.calibration === EXPERIMENT_DEFAULTS.calibration) {
    await refuseFixtureStreamFor("--calibration", o.calibration, tokenizer);
  }
  if (o.pplData === undefined) await refuseFixtureStreamFor("--ppl-data", EVAL_DEFAULTS.pplData, tokenizer);
}
