/**
 * The whole offsite-tuning loop for one method as a library call
 * (`offtune experiment`, `offtune demo`): GradOT,
 * or a baseline of docs/METHOD.md §3 (OT LayerDrop, CRaSh), as the seeds' table
 * measures it (docs/METHOD.md §1, §5), composed from the verbs:
 *
 * 1. the model owner builds the emulator (`build-emulator --method`), one per
 *    ratio of `ratios` (the size sweep of the frontier, docs/REPORT.md), timed;
 * 2. zero-shot: the original model (Full ZS) and adapter + emulator (Emulator ZS);
 * 3. per seed and task: the data owner tunes the adapter through the emulator
 *    (`tune`), scored with the emulator (Emulator FT) and plugged into the
 *    original model (Plug-in); the reference fine-tunes the whole original
 *    model (`full-ft`, Full FT) unless `--no-full-ft`;
 * 4. perplexities on held-out text of the original, the emulator and one
 *    plug-in model;
 * 5. one `result.json` per ratio and seed under `<runs>/<label>/seed-<n>/`,
 *    the layout `offtune report` reads (docs/REPORT.md).
 *
 * What does not depend on the emulator (Full ZS, Full FT) runs once for all
 * ratios. A ratio and seed whose result.json exists is finished and not
 * redone (docs/REPORT.md "The runs directory": a `seed-<n>` directory with
 * its result.json), provided it was written with this experiment's settings.
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
import { JobSubmitter, verbJob } from "../distributed/job_queue.ts";
import { mapConcurrent } from "../distributed/map_concurrent.ts";
import { EVAL_DEFAULTS, type EvalReport, selectTasks } from "../eval/eval_report.ts";
import { listTasks } from "../eval/task_file.ts";
import { readManifest } from "../io/manifest.ts";
import { ownTokenizer } from "../io/tokenizer.ts";
import { FIXTURE_TOKENIZER, refuseFixtureStreamFor } from "../io/tokenizer_for.ts";
import { emulatorMethod, type EmulatorMethod, needsCalibration } from "./build_emulator.ts";
import type { CompressedPart } from "../compress/budget.ts";
import type { SelectionKind } from "../compress/select.ts";
import { checkGradotVariant } from "../operators/gradot.ts";
import { type ImportanceEstimator, importanceEstimator } from "../operators/scaleot.ts";
import { checkOutputDir } from "../io/output_dir.ts";
import { inspectCheckpoint } from "../model/inspect.ts";
import type { AdapterSplit } from "../records/records.ts";
import { type OtDistillSettings, otDistillSettings } from "../operators/ot_distill.ts";
import { readRunResult, type RunResult, runResultPath, type TaskResult, writeRunResult } from "../report/run_result.ts";
import { fullTuneStatePath } from "../train/full_ft_state.ts";
import { partialDirOf } from "../train/tune.ts";
import { TUNE_STATE_FILE } from "../train/tune_package.ts";

/** The options of one experiment (`offtune experiment`'s flags, parsed; {@link experimentOptions} fills the defaults). */
export interface ExperimentOptions {
  /** The original checkpoint (with its tokenizer.json). */
  model: string;
  /** The runs directory: results, and work files in `<runs>/_work`. */
  runs: string;
  /** The emulator: GradOT's, or a baseline's (OT LayerDrop, CRaSh, OT distilled). */
  method: EmulatorMethod;
  /** Task names (in `tasksDir`). */
  tasks: string[];
  /** Where the tasks are (one directory per task, `listTasks`). */
  tasksDir: string;
  /** Tuning seeds: one result.json each. */
  seeds: number[];
  /**
   * The report row's label (default {@link experimentLabel}'s); with several
   * ratios, the rows' prefix: `<label>-r<ratio>`.
   */
  label?: string;
  /** The emulator ratios: one emulator and one report row each. */
  ratios: number[];
  /** The adapter split, bottom and top blocks (build-emulator's default when absent). */
  split?: AdapterSplit;
  /** GCS λ for attention (GradOT's default when absent). */
  lambdaAttn?: number;
  /** GCS λ for the MLP (GradOT's default when absent). */
  lambdaMlp?: number;
  /** The OT distillation's settings (`ot-distill` only; build-emulator's defaults where absent, docs/METHOD.md §3). */
  distill?: Partial<OtDistillSettings>;
  /** One GCS λ for both (the unified-λ ablation; excludes `lambdaAttn`, `lambdaMlp`). */
  lambda?: number;
  /** GradOT's selection (`gcs` when absent; `magnitude`: the ablation at the same budget). */
  selection?: SelectionKind;
  /** Compress attention only (`drd`) or the MLP only (`scp`); both when absent. */
  only?: CompressedPart;
  /** ScaleOT's replace fraction α (from the ratio when absent; docs/METHOD.md §3 "ScaleOT"). */
  replaceFraction?: number;
  /** ScaleOT's rank reduction β (its default when absent). */
  rankReduction?: number;
  /** ScaleOT's importance estimator (`cheap` when absent). */
  importance?: ImportanceEstimator;
  /** ScaleOT's REINFORCE episodes (its default when absent). */
  episodes?: number;
  /** Calibration file (GradOT, CRaSh, OT distilled, ScaleOT): text, `.jsonl` of `{"text"}` documents, or a token stream `.bin`. */
  calibration: string;
  /** Held-out text for the perplexities (eval's `--ppl-data`); default eval's. */
  pplData?: string;
  /** Calibration sequences (GradOT, CRaSh, OT distilled). */
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
  /**
   * Threads of each GradOT build, evaluation, tuning and Full FT step (their
   * `--workers`, docs/DISTRIBUTED.md "All cores of one machine"; default 1,
   * since the steps already run `jobs` at a time). Emulators, reports and
   * adapters are the same bytes for any count.
   */
  workers?: number;
  /** The accuracy the results report. */
  metric: "acc" | "acc_norm";
  /** No progress line. */
  quiet: boolean;
  /**
   * Runs the steps as jobs of this Redis queue (`redis://host:port`), on
   * whichever `offtune worker`s serve it, instead of here
   * (docs/DISTRIBUTED.md "Many machines"); `jobs` then bounds the steps
   * submitted at once.
   */
  queue?: string;
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

/** What a finished result.json must share with this experiment to stand for its ratio and seed. */
function expectedOf(o: ExperimentOptions): Record<string, unknown> {
  return {
    model: o.model,
    metric: o.metric,
    tasks: [...o.tasks].sort().join(","),
    epochs: o.epochs,
    trainLimit: o.trainLimit ?? null,
    evalLimit: o.evalLimit ?? null,
    "Full FT": o.fullFt,
  };
}

/**
 * Whether `label` and `seed` are finished: their result.json exists
 * (docs/REPORT.md "The runs directory"). A finished result is not redone; one
 * written with other settings is an error rather than a row that silently
 * mixes two experiments.
 *
 * @throws Error naming the file and the first differing setting; RunResultError for an invalid file
 */
async function isFinished(o: ExperimentOptions, label: string, seed: number): Promise<boolean> {
  const path = runResultPath(o.runs, label, seed);
  if (!(await access(path).then(() => true, () => false))) return false;
  const r = await readRunResult(path);
  const theirs: Record<string, unknown> = {
    model: r.model,
    metric: r.metric,
    tasks: Object.keys(r.tasks).sort().join(","),
    epochs: r.settings.epochs,
    trainLimit: r.settings.trainLimit,
    evalLimit: r.settings.evalLimit,
    "Full FT": Object.values(r.tasks).every((t) => t.full_ft !== null),
  };
  for (const [key, ours] of Object.entries(expectedOf(o))) {
    if (theirs[key] !== ours) {
      throw new Error(
        `--runs: "${path}" is a finished run with ${key} ${JSON.stringify(theirs[key])}, this experiment's is ` +
          `${JSON.stringify(ours)}; move it aside (e.g. rename its seed directory to _seed-${seed}) or choose another --runs`,
      );
    }
  }
  return true;
}

/** One ratio of the sweep: its row label and its emulator package in `<runs>/_work`. */
interface RatioRun {
  ratio: number;
  label: string;
  emulator: string;
}

/**
 * The report row's label of `ratio`: `label` as given (with several ratios,
 * `<label>-r<ratio>`), else `<method>-r<ratio>` with GradOT's
 * ablations named in between so their rows do not collide in `offtune
 * report` (docs/METHOD.md §2 "Ablations"): `mag` for `--selection
 * magnitude`, `drd`/`scp` for `--only`, `l<λ>` for `--lambda`, e.g.
 * `gradot-mag-r0.5`, `gradot-drd-r0.7`, `gradot-l1000-r0.5`.
 */
export function experimentLabel(
  o: Pick<ExperimentOptions, "label" | "method" | "ratios" | "lambda" | "selection" | "only">,
  ratio: number,
): string {
  if (o.label !== undefined) return o.ratios.length === 1 ? o.label : `${o.label}-r${ratio}`;
  const variant = o.method !== "gradot" ? [] : [
    ...(o.selection === "magnitude" ? ["mag"] : []),
    ...(o.only ? [o.only] : []),
    ...(o.lambda !== undefined ? [`l${o.lambda}`] : []),
  ];
  return [o.method, ...variant, `r${ratio}`].join("-");
}

/** Runs the experiment and returns the written result paths (finished ones are kept, not rewritten). */
export async function runExperiment(o: ExperimentOptions): Promise<string[]> {
  const submitter = o.queue === undefined ? undefined : await JobSubmitter.open(o.queue);
  try {
    return await runSteps(o, submitter ? (args, log) => submitter.run(verbJob(args, log)) : runVerb);
  } finally {
    await submitter?.close();
  }
}

/** {@link runExperiment} with each step's verb run by `run` (here, or as a job of the queue). */
async function runSteps(o: ExperimentOptions, run: (args: string[], log: string) => Promise<void>): Promise<string[]> {
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
  const pplArgs = ["--ppl", ...(o.pplData === undefined ? [] : ["--ppl-data", o.pplData])];
  const evalArgs = (model: string, tasks: string[], json: string, extra: string[] = []) => [
    "eval", "--model", model, "--tasks", tasks.join(","), "--tasks-dir", o.tasksDir, ...flagIf("--limit", o.evalLimit),
    "--json", json, "--quiet", ...flagIf("--workers", o.workers), ...extra,
  ];
  const tuneHyper = [
    "--tasks-dir", o.tasksDir, "--epochs", String(o.epochs), ...flagIf("--lr", o.lr), ...flagIf("--limit", o.trainLimit),
    ...flagIf("--workers", o.workers),
  ];

  // What is left: the ratio × seed pairs without a finished result.json; the
  // ratios they need an emulator for, and the seeds they need Full FT for.
  const ratios = o.ratios.map((ratio): RatioRun => {
    const label = experimentLabel(o, ratio);
    return { ratio, label, emulator: join(work, `${label}-emulator`) };
  });
  const todo: Array<{ ratio: RatioRun; seed: number }> = [];
  for (const r of ratios) {
    for (const seed of o.seeds) if (!(await isFinished(o, r.label, seed))) todo.push({ ratio: r, seed });
  }
  const built = ratios.filter((r) => todo.some((t) => t.ratio === r));
  const fullFtSeeds = o.fullFt ? o.seeds.filter((seed) => todo.some((t) => t.seed === seed)) : [];

  // Each step is a process of seconds to many minutes: a plain line as each starts and ends,
  // and one every PLAIN_INTERVAL_S seconds naming the steps still running. The lines are the
  // run's log (to stdout when it is redirected; src/cli/progress.ts).
  const progress = createProgress("experiment", o.quiet, { every: "update", log: true });
  let done = 0;
  const total = todo.length === 0
    ? 0
    : built.length * (1 + o.tasks.length) + o.tasks.length + (todo.length * 3 + fullFtSeeds.length) * o.tasks.length;
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
      await run(args, join(logs, `${what.replace(/[^\w.-]+/g, "_")}.log`));
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
  const gradotFlags = o.method === "gradot"
    ? [
      ...flagIf("--lambda-attn", o.lambdaAttn),
      ...flagIf("--lambda-mlp", o.lambdaMlp),
      ...flagIf("--lambda", o.lambda),
      ...(o.selection ? ["--selection", o.selection] : []),
      ...(o.only ? ["--only", o.only] : []),
      "--workers", String(o.workers ?? 1),
    ]
    : [];
  const distillFlags = o.method === "ot-distill"
    ? [
      ...flagIf("--distill-steps", o.distill?.steps),
      ...flagIf("--distill-batch", o.distill?.batch),
      ...flagIf("--distill-lr", o.distill?.lr),
      ...flagIf("--distill-mse-weight", o.distill?.mseWeight),
      ...flagIf("--distill-seed", o.distill?.seed),
    ]
    : [];
  const scaleotFlags = o.method === "scaleot"
    ? [
      ...flagIf("--replace-fraction", o.replaceFraction),
      ...flagIf("--rank-reduction", o.rankReduction),
      ...(o.importance === undefined ? [] : ["--importance", o.importance]),
      ...flagIf("--episodes", o.episodes),
    ]
    : [];
  const splitFlags = o.split === undefined ? [] : ["--split", `${o.split.bottom},${o.split.top}`];
  // One build per ratio, timed by build-emulator itself (--timings: the build, not the process start).
  const builds = new Map<string, Promise<{ manifest: Awaited<ReturnType<typeof readManifest>>; seconds: number }>>();
  const build = (r: RatioRun) =>
    remember(builds, r.label, async () => {
      const timings = join(work, `${r.label}-build-timings.json`);
      await step(`build-emulator ${r.label}`, [
        "build-emulator", "--method", o.method, "--model", o.model, "--out", r.emulator, "--ratio", String(r.ratio),
        ...splitFlags, ...calibrationFlags, ...gradotFlags, ...distillFlags, ...scaleotFlags, "--timings", timings, "--quiet",
      ]);
      const { seconds } = JSON.parse(await readFile(timings, "utf8")) as { seconds: number };
      return { manifest: await readManifest(r.emulator), seconds };
    });

  // Every step below runs in one pool of --jobs processes: the builds first, then
  // zero-shot, one process per model × task (the first task's also measures
  // perplexity), Full FT once per seed × task for every ratio, and per ratio ×
  // seed × task: tune through the emulator, score it there and plugged in.
  // A step that needs an emulator waits for its build.
  const zeroShot = async (r: RatioRun | undefined, task: string, ppl: boolean): Promise<EvalReport> => {
    const json = join(work, `${r === undefined ? "full" : `${r.label}-emulator`}_zs_${task}.json`);
    if (r !== undefined) await build(r);
    await step(`${r === undefined ? "full" : `${r.label} emulator`}-zs ${task}`, evalArgs(r?.emulator ?? o.model, [task], json, ppl ? pplArgs : []));
    return readEval(json);
  };
  const fullFtUnit = async (seed: number, task: string): Promise<number> => {
    const tuned = join(work, `full-ft-seed${seed}`, task);
    const fullFtJson = join(work, `full-ft-seed${seed}`, `full_ft_${task}.json`);
    await step(`full-ft ${task} seed ${seed}`, [
      "full-ft", "--model", o.model, "--task", task, "--out", tuned, "--seed", String(seed), ...tuneHyper, "--quiet",
      ...(await resumeIf(fullTuneStatePath(tuned))),
    ]);
    await run(evalArgs(tuned, [task], fullFtJson), join(logs, `full-ft-eval_${task}_${seed}.log`));
    return 100 * (await readEval(fullFtJson)).tasks[task][o.metric];
  };
  const tuneUnit = async (r: RatioRun, seed: number, task: string, measurePpl: boolean) => {
    await build(r);
    const seedDir = join(work, `${r.label}-seed${seed}`);
    const adapter = join(seedDir, "adapters", task);
    const what = `${r.label} ${task} seed ${seed}`;
    await step(`tune ${what}`, [
      "tune", "--emulator", r.emulator, "--task", task, "--out", adapter, "--seed", String(seed), ...tuneHyper, "--quiet",
      ...(await resumeIf(join(adapter, TUNE_STATE_FILE), join(partialDirOf(adapter), TUNE_STATE_FILE))),
    ]);
    const emuFt = join(seedDir, `emulator_ft_${task}.json`);
    await step(`emulator-ft ${what}`, evalArgs(r.emulator, [task], emuFt, ["--adapter", adapter]));
    const plugIn = join(seedDir, `plug_in_${task}.json`);
    await step(`plug-in ${what}`, evalArgs(o.model, [task], plugIn, ["--adapter", adapter, ...(measurePpl ? pplArgs : [])]));
    const plug = await readEval(plugIn);
    return {
      emulatorFt: 100 * (await readEval(emuFt)).tasks[task][o.metric],
      plugIn: 100 * plug.tasks[task][o.metric],
      plugInPpl: measurePpl ? plug.ppl?.ppl ?? null : null,
    };
  };
  const fullZs = new Map<string, Promise<EvalReport>>();
  const emulatorZs = new Map<string, Promise<EvalReport>>();
  const fullFt = new Map<string, Promise<number>>();
  const tuned = new Map<string, Promise<Awaited<ReturnType<typeof tuneUnit>>>>();
  const units: Array<() => Promise<unknown>> = [
    ...built.map((r) => () => build(r)),
    ...(todo.length === 0 ? [] : o.tasks.map((task, t) => () => remember(fullZs, task, () => zeroShot(undefined, task, t === 0)))),
    ...built.flatMap((r) => o.tasks.map((task, t) => () => remember(emulatorZs, `${r.label} ${task}`, () => zeroShot(r, task, t === 0)))),
    ...fullFtSeeds.flatMap((seed) => o.tasks.map((task) => () => remember(fullFt, `${seed} ${task}`, () => fullFtUnit(seed, task)))),
    ...todo.flatMap(({ ratio: r, seed }) =>
      o.tasks.map((task, t) => () => remember(tuned, `${r.label} ${seed} ${task}`, () => tuneUnit(r, seed, task, t === 0)))
    ),
  ];
  await mapConcurrent(units, o.jobs, (unit) => unit());

  const middleParams = todo.length === 0 ? 0 : await originalMiddleParams(o.model, (await build(built[0])).manifest);
  const written: string[] = [];
  for (const { ratio: r, seed } of todo) {
    const { manifest, seconds } = await build(r);
    const tasks: Record<string, TaskResult> = {};
    for (const task of o.tasks) {
      const full = (await fullZs.get(task)!).tasks[task];
      const mine = await tuned.get(`${r.label} ${seed} ${task}`)!;
      tasks[task] = {
        n: full.n,
        full_zs: 100 * full[o.metric],
        emulator_zs: 100 * (await emulatorZs.get(`${r.label} ${task}`)!).tasks[task][o.metric],
        full_ft: o.fullFt ? await fullFt.get(`${seed} ${task}`)! : null,
        emulator_ft: mine.emulatorFt,
        plug_in: mine.plugIn,
        chance: 100 * full.chance,
      };
    }
    const first = o.tasks[0];
    const extra = (manifest.extra ?? {}) as { blocks?: Array<{ role: string; params: number }> };
    const result: RunResult = {
      formatVersion: 1,
      model: o.model,
      method: manifest.method,
      label: r.label,
      seed,
      settings: {
        ratio: r.ratio, ...manifest.settings, epochs: o.epochs, trainLimit: o.trainLimit ?? null, evalLimit: o.evalLimit ?? null,
      },
      emulator_params: (extra.blocks ?? []).filter((b) => b.role === "middle").reduce((n, b) => n + b.params, 0),
      middle_params: middleParams,
      metric: o.metric,
      tasks,
      ppl: {
        full: (await fullZs.get(first)!).ppl!.ppl,
        emulator: (await emulatorZs.get(`${r.label} ${first}`)!).ppl!.ppl,
        plug_in: (await tuned.get(`${r.label} ${seed} ${first}`)!).plugInPpl,
      },
      emulator_build_s: seconds,
    };
    written.push(await writeRunResult(o.runs, result));
  }
  const kept = ratios.length * o.seeds.length - todo.length;
  progress.finish(`${written.length} results in ${o.runs}${kept === 0 ? "" : ` (${kept} finished before, kept)`}`);
  return written;
}

/** `map`'s promise for `key`, started with `start` the first time. */
function remember<T>(map: Map<string, Promise<T>>, key: string, start: () => Promise<T>): Promise<T> {
  if (!map.has(key)) map.set(key, start());
  return map.get(key)!;
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
  ratios: [0.5],
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
 * @throws Error for an unknown method, metric, task or ScaleOT importance estimator, no ratio, a ratio
 *   outside (0, 1] or listed twice, a bad combination of GradOT's ablation knobs (`checkGradotVariant`),
 *   or a missing input file
 */
export async function experimentOptions(
  given: Partial<ExperimentOptions> & Pick<ExperimentOptions, "model" | "runs">,
): Promise<ExperimentOptions> {
  const tasksDir = given.tasksDir ?? EVAL_DEFAULTS.tasksDir;
  const o: ExperimentOptions = {
    ...EXPERIMENT_DEFAULTS,
    seeds: [...EXPERIMENT_DEFAULTS.seeds],
    ratios: [...EXPERIMENT_DEFAULTS.ratios],
    jobs: availableParallelism(),
    ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
    tasksDir,
  } as ExperimentOptions;
  if (o.metric !== "acc" && o.metric !== "acc_norm") throw new Error(`--metric expects acc or acc_norm, got "${o.metric}"`);
  if (o.ratios.length === 0) throw new Error("--ratios expects at least one ratio");
  for (const [i, ratio] of o.ratios.entries()) {
    if (!(ratio > 0 && ratio <= 1)) throw new Error(`--ratios expects numbers in (0, 1], got ${ratio}`);
    if (o.ratios.indexOf(ratio) !== i) throw new Error(`--ratios lists ${ratio} twice`);
  }
  o.method = emulatorMethod(o.method);
  if (o.distill) otDistillSettings(o.distill); // bad values fail here, naming their flag, not in the build step
  if (o.method === "gradot") checkGradotVariant(o);
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
