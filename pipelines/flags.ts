/**
 * Flag parsing shared by the `offtune` verbs: strict `node:util` parsing (an
 * unknown flag or a positional argument is an error) and the check that the
 * verb's required flags were given, with the one wording every verb uses.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

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
