/**
 * Flag parsing shared by the `offtune` verbs: strict `node:util` parsing (an
 * unknown flag or a positional argument is an error) and the check that the
 * verb's required flags were given, with the one wording every verb uses;
 * and the flags several verbs share (`--split`, the tuning settings).
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  type AdapterSplit,
  initBackend,
  type ImportanceEstimator,
  importanceEstimator,
  OT_DISTILL_DEFAULTS,
  type OtDistillSettings,
  TUNE_DEFAULTS,
  type TuneHyper,
} from "../mod.ts";

/** A verb's flag table, as `parseArgs` takes it. */
type FlagTable = NonNullable<ParseArgsConfig["options"]>;

/** The parsed values of `O` (what `parseArgs` returns for it in strict mode). */
type FlagValues<O extends FlagTable> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>["values"];

/** The string flags of `O`: the ones a verb can require. */
type StringFlag<O extends FlagTable> = { [K in keyof O]: O[K] extends { type: "string" } ? K : never }[keyof O] & string;

/**
 * Parses `argv` against the flag table `options` of verb `verb` and checks
 * that every (string) flag of `required` was given and is not empty; the
 * required flags come back typed as present.
 *
 * @throws Error `--<flag> is required (see offtune <verb> --help)` for the
 *   first missing one, or `parseArgs`'s error for an unknown flag or a positional
 */
export function parseVerbFlags<const O extends FlagTable, const R extends StringFlag<O>>(
  argv: string[],
  options: O,
  verb: string,
  required: readonly R[],
): FlagValues<O> & { [K in R]: string } {
  const values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  for (const name of required) {
    if (!(values as Record<string, unknown>)[name]) throw new Error(`--${name} is required (see offtune ${verb} --help)`);
  }
  return values as FlagValues<O> & { [K in R]: string };
}

/** A finite number from a flag, or undefined when absent. */
export function numberFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new Error(`--${flag} expects a number, got "${value}"`);
  return n;
}

/** A non-negative integer flag, or undefined when absent. */
export function countFlag(value: string | undefined, flag: string): number | undefined {
  const n = numberFlag(value, flag);
  if (n !== undefined && (!Number.isInteger(n) || n < 0)) throw new Error(`--${flag} expects a whole number, got "${value}"`);
  return n;
}

/** A positive integer from a flag, or undefined when absent. */
export function positiveIntFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} expects a positive integer, got "${value}"`);
  return n;
}

/** A number flag of at least 0 (e.g. GCS's λ), or undefined when absent. */
export function nonNegativeFlag(value: string | undefined, flag: string): number | undefined {
  const n = numberFlag(value, flag);
  if (n !== undefined && n < 0) throw new Error(`--${flag} expects a number ≥ 0, got "${value}"`);
  return n;
}

/** A number flag above 0 (e.g. a learning rate), or undefined when absent. */
export function positiveNumberFlag(value: string | undefined, flag: string): number | undefined {
  const n = numberFlag(value, flag);
  if (n !== undefined && !(n > 0)) throw new Error(`--${flag} expects a number > 0, got "${value}"`);
  return n;
}

/**
 * A fraction flag, in (0, 1] (e.g. an emulator ratio), or in [0, 1] with
 * `allowZero`; undefined when absent.
 */
export function fractionFlag(value: string | undefined, flag: string, allowZero = false): number | undefined {
  const n = numberFlag(value, flag);
  if (n !== undefined && !((allowZero ? n >= 0 : n > 0) && n <= 1)) {
    throw new Error(`--${flag} expects a number in ${allowZero ? "[0" : "(0"}, 1], got "${value}"`);
  }
  return n;
}

/**
 * Checks a flag's value against a bound known only once the model's config
 * is read (e.g. a LoRA rank against the layer width), before any work.
 *
 * @param what the bound in words, e.g. `the layer width of "fixtures/tiny"`
 * @throws Error `--<flag> <value> exceeds <what> (<limit>)`
 */
export function requireAtMost(value: number, limit: number, flag: string, what: string): void {
  if (value > limit) throw new Error(`--${flag} ${value} exceeds ${what} (${limit})`);
}

/** `--split b,t` as an {@link AdapterSplit}, or undefined when absent. */
export function splitFlag(value: string | undefined): AdapterSplit | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+),(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`--split expects "bottom,top" block counts, e.g. 2,2; got "${value}"`);
  return { bottom: Number(m[1]), top: Number(m[2]) };
}

/** The flags of the tuning settings, shared by `offtune tune` and `offtune full-ft`. */
export const HYPER_FLAGS = {
  epochs: { type: "string" },
  lr: { type: "string" },
  batch: { type: "string" },
  "micro-batch": { type: "string" },
  seed: { type: "string" },
  schedule: { type: "string" },
  "min-lr": { type: "string" },
  warmup: { type: "string" },
  "weight-decay": { type: "string" },
  clip: { type: "string" },
} as const;

/** Help lines of {@link HYPER_FLAGS}. */
export const HYPER_HELP = `  --epochs <n>           passes over the items (default ${TUNE_DEFAULTS.epochs})
  --lr <x>               peak learning rate (default ${TUNE_DEFAULTS.lr}; LoRA: 1e-3)
  --batch <n>            items per step (default ${TUNE_DEFAULTS.batch})
  --micro-batch <n>      items per forward/backward pass, the unit --workers
                         shares out (default ${TUNE_DEFAULTS.microBatch}); the result depends on
                         it, not on --workers
  --seed <n>             item order (and LoRA init) seed (default ${TUNE_DEFAULTS.seed})
  --schedule <s>         cosine | constant, after linear warmup (default ${TUNE_DEFAULTS.schedule})
  --min-lr <x>           cosine floor (default ${TUNE_DEFAULTS.minLr})
  --warmup <n>           warmup steps (default ${TUNE_DEFAULTS.warmup})
  --weight-decay <x>     AdamW decoupled decay on matrices (default ${TUNE_DEFAULTS.weightDecay})
  --clip <x>             global gradient-norm clip (default ${TUNE_DEFAULTS.clipNorm})`;

/** The tuning settings given by {@link HYPER_FLAGS} (absent ones stay undefined). */
export function hyperFromFlags(
  flags: Partial<Record<keyof typeof HYPER_FLAGS, string>>,
  lrDefault = TUNE_DEFAULTS.lr,
): Partial<TuneHyper> {
  const schedule = flags.schedule;
  if (schedule !== undefined && schedule !== "cosine" && schedule !== "constant") {
    throw new Error(`--schedule expects "cosine" or "constant", got "${schedule}"`);
  }
  return {
    epochs: positiveIntFlag(flags.epochs, "epochs"),
    lr: positiveNumberFlag(flags.lr, "lr") ?? lrDefault,
    batch: positiveIntFlag(flags.batch, "batch"),
    microBatch: positiveIntFlag(flags["micro-batch"], "micro-batch"),
    seed: countFlag(flags.seed, "seed"),
    schedule,
    minLr: nonNegativeFlag(flags["min-lr"], "min-lr"),
    warmup: countFlag(flags.warmup, "warmup"),
    weightDecay: nonNegativeFlag(flags["weight-decay"], "weight-decay"),
    clipNorm: positiveNumberFlag(flags.clip, "clip"),
  };
}

/** The `--distill-*` flags of the verbs that build an `ot-distill` emulator (build-emulator, experiment). */
export const DISTILL_FLAGS = {
  "distill-steps": { type: "string" },
  "distill-lr": { type: "string" },
  "distill-batch": { type: "string" },
  "distill-mse-weight": { type: "string" },
  "distill-seed": { type: "string" },
} as const;

/** The `--distill-*` flags' help lines (docs/METHOD.md §3 "OT (LayerDrop + distillation)"). */
export const DISTILL_HELP = `OT distillation (ot-distill only):
  --distill-steps <n>    optimizer steps (default ${OT_DISTILL_DEFAULTS.steps})
  --distill-batch <n>    calibration sequences per step (default ${OT_DISTILL_DEFAULTS.batch})
  --distill-lr <x>       peak learning rate, warmup + cosine (default ${OT_DISTILL_DEFAULTS.lr})
  --distill-mse-weight <x>
                         weight ≥ 0 of the normalised hidden-state MSE against
                         the LM loss (default ${OT_DISTILL_DEFAULTS.mseWeight})
  --distill-seed <n>     seeds the order of the calibration sequences (default ${OT_DISTILL_DEFAULTS.seed})`;

/** The distillation settings the `--distill-*` flags give (absent ones undefined), range-checked. */
export function distillFromFlags(flags: { [K in keyof typeof DISTILL_FLAGS]?: string }): Partial<OtDistillSettings> {
  return {
    steps: positiveIntFlag(flags["distill-steps"], "distill-steps"),
    batch: positiveIntFlag(flags["distill-batch"], "distill-batch"),
    lr: positiveNumberFlag(flags["distill-lr"], "distill-lr"),
    mseWeight: nonNegativeFlag(flags["distill-mse-weight"], "distill-mse-weight"),
    seed: countFlag(flags["distill-seed"], "distill-seed"),
  };

}

/** A fraction flag in [0, 1) (e.g. ScaleOT's replace fraction and rank reduction), or undefined when absent. */
export function fractionBelowOneFlag(value: string | undefined, flag: string): number | undefined {
  const n = numberFlag(value, flag);
  if (n !== undefined && !(n >= 0 && n < 1)) throw new Error(`--${flag} expects a number in [0, 1), got "${value}"`);
  return n;
}

/** The flags only ScaleOT reads, in build-emulator and experiment (docs/METHOD.md §3 "ScaleOT"). */
export const SCALEOT_FLAGS = {
  "replace-fraction": { type: "string" },
  "rank-reduction": { type: "string" },
  importance: { type: "string" },
  episodes: { type: "string" },
} as const;

/** ScaleOT's settings from {@link SCALEOT_FLAGS}, what a verb passes on to its build. */
export interface ScaleotFlagSettings {
  replaceFraction?: number;
  rankReduction?: number;
  importance?: ImportanceEstimator;
  episodes?: number;
}

/**
 * ScaleOT's settings the {@link SCALEOT_FLAGS} give (absent ones undefined),
 * range-checked.
 *
 * @throws Error naming the flag when one is given for a `method` other than scaleot, or is out of range
 */
export function scaleotFromFlags(flags: { [K in keyof typeof SCALEOT_FLAGS]?: string }, method: string): ScaleotFlagSettings {
  const stray = (Object.keys(SCALEOT_FLAGS) as Array<keyof typeof SCALEOT_FLAGS>).find((k) => flags[k] !== undefined);
  if (stray && method !== "scaleot") throw new Error(`--${stray} applies to --method scaleot only, not ${method}`);
  return {
    replaceFraction: fractionBelowOneFlag(flags["replace-fraction"], "replace-fraction"),
    rankReduction: fractionBelowOneFlag(flags["rank-reduction"], "rank-reduction"),
    importance: flags.importance === undefined ? undefined : importanceEstimator(flags.importance),
    episodes: positiveIntFlag(flags.episodes, "episodes"),
  };
}

/**
 * The `main` of a queue job's hidden verb (`gradot-block`, `gradot-slice`;
 * docs/DISTRIBUTED.md "What a job is"): `--input` (the job file), `--out`
 * and `--backend`, then `run(input, out)`; 0 once it returns.
 */
export function jobVerbMain(verb: string, run: (input: string, out: string) => Promise<unknown>): (argv: string[]) => Promise<number> {
  const options = { input: { type: "string" }, out: { type: "string" }, backend: { type: "string" } } as const;
  return async (argv) => {
    const flags = parseVerbFlags(argv, options, verb, ["input", "out"]);
    await initBackend(flags.backend, true);
    await run(flags.input, flags.out);
    return 0;
  };
}
