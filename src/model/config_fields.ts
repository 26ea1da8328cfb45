/**
 * Typed reads of `config.json` values, with errors that name the key, the
 * expected kind and the value found, so every architecture's `parseConfig`
 * rejects a bad config the same way (docs/DESIGN.md "Models": a typed config).
 *
 * @module
 */

type Raw = Record<string, unknown>;

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

function present(raw: Raw, key: string): boolean {
  return raw[key] !== undefined && raw[key] !== null;
}

/**
 * A positive integer `raw[key]`; `fallback` when absent or null, an error when
 * absent without a fallback.
 */
export function configInt(raw: Raw, key: string, fallback?: number): number {
  if (!present(raw, key)) {
    if (fallback !== undefined) return fallback;
    throw new Error(`Invalid config.json: missing "${key}"`);
  }
  const value = raw[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new Error(`Invalid config.json: "${key}" must be a positive integer, found ${show(value)}`);
  }
  return value;
}

/** A positive finite number `raw[key]`, or `fallback` when absent or null. */
export function configNumber(raw: Raw, key: string, fallback: number): number {
  if (!present(raw, key)) return fallback;
  const value = raw[key];
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new Error(`Invalid config.json: "${key}" must be a positive number, found ${show(value)}`);
  }
  return value;
}

/** A boolean `raw[key]`, or `fallback` when absent or null. */
export function configBool(raw: Raw, key: string, fallback: boolean): boolean {
  if (!present(raw, key)) return fallback;
  const value = raw[key];
  if (typeof value !== "boolean") {
    throw new Error(`Invalid config.json: "${key}" must be true or false, found ${show(value)}`);
  }
  return value;
}

/**
 * A string `raw[key]` (or `fallback` when absent or null) that must be one of
 * `allowed`; the error says the value is unsupported and lists what is.
 */
export function configChoice(raw: Raw, key: string, fallback: string, allowed: readonly string[]): string {
  const value = present(raw, key) ? raw[key] : fallback;
  if (typeof value !== "string" || !allowed.includes(value)) {
    throw new Error(
      `Unsupported config.json: "${key}" is ${show(value)}; supported: ${allowed.map((a) => `"${a}"`).join(", ")}`,
    );
  }
  return value;
}

/**
 * Throws `Unsupported config.json: <what>` unless `ok`: for settings the
 * architecture parses but does not implement.
 */
export function requireSupported(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Unsupported config.json: ${what}`);
}

/** `hidden / heads`, after checking the heads divide the width evenly. */
export function headDim(hidden: number, heads: number): number {
  if (hidden % heads !== 0) {
    throw new Error(`Invalid config.json: hidden size ${hidden} is not divisible by ${heads} attention heads`);
  }
  return hidden / heads;
}
