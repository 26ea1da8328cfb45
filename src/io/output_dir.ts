/**
 * Where a verb may write its output directory (docs/GUARANTEES.md "Outputs").
 * A verb writes only into a directory that does not exist, is empty, or
 * holds an output of the same kind written by the same verb (an emulator
 * package for `build-emulator`, an adapter package for `tune`, a checkpoint
 * marked as written by `plug-in` for `plug-in`, …). Anything else is refused
 * with a message naming the path and what it holds, unless `--force`; then
 * the verb's directory transaction (src/io/atomic.ts) replaces it, keeping
 * the old directory until the new one is complete. An output that is, holds
 * or lies inside one of the verb's inputs is refused even with `--force`.
 *
 * The check runs before any work, so a refused run costs nothing and
 * touches nothing.
 *
 * @module
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { MANIFEST_FILE, readManifest } from "./manifest.ts";

/**
 * The file that marks a Hugging Face checkpoint as written by an offtune verb
 * (`{"writtenBy": "plug-in"}`), so that verb may later replace it and no
 * other verb does. Original checkpoints have none.
 */
export const OUTPUT_MARKER = "offtune_output.json";

/**
 * What a verb writes, and so which existing directory it may write over:
 * an offtune package of a manifest kind; a checkpoint with an
 * {@link OUTPUT_MARKER} naming the verb; or a directory holding an entry
 * only that verb writes (e.g. pretraining's state file), described as `what`.
 */
export type OutputKind =
  | { package: "emulator" | "adapter" }
  | { marker: true }
  | { holds: string; what: string };

/** What {@link checkOutputDir} checks. */
export interface OutputRequest {
  /** The writing verb, e.g. `build-emulator` (named in messages, and in the marker). */
  verb: string;
  /** The output flag without dashes, e.g. `out` or `runs`. */
  flag: string;
  /** The output directory as given. */
  path: string;
  kind: OutputKind;
  /** The verb's input paths by flag name (absent flags undefined). */
  inputs: Record<string, string | undefined>;
  /** Whether `--force` was given; undefined for a verb that has no `--force`. */
  force?: boolean;
}

/** What an existing output directory holds, as {@link describeDirectory} sees it. */
interface DirectoryContents {
  state: "absent" | "empty" | "occupied" | "file";
  /** The manifest kind, for an offtune package. */
  packageKind?: "emulator" | "adapter";
  /** The verb in its {@link OUTPUT_MARKER}, for a marked checkpoint. */
  writtenBy?: string;
  /** The entry names (at most a few listed in messages). */
  entries: string[];
  /** In words, for messages: `an emulator package`, `a model checkpoint (config.json, …)`. */
  description: string;
}

const list = (names: string[]) =>
  names.slice(0, 3).map((n) => JSON.stringify(n)).join(", ") + (names.length > 3 ? `, … (${names.length} entries)` : "");

/** The verb named by a checkpoint's {@link OUTPUT_MARKER}, or undefined when it has none (or it is unreadable). */
async function markerVerb(dir: string): Promise<string | undefined> {
  try {
    const value = JSON.parse(await readFile(join(dir, OUTPUT_MARKER), "utf8")) as { writtenBy?: unknown };
    return typeof value.writtenBy === "string" ? value.writtenBy : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What the directory `dir` holds: nothing (absent or empty), an offtune
 * package (by its manifest), a checkpoint written by an offtune verb (by its
 * marker), a model checkpoint, other entries, or a file (not a directory).
 */
async function describeDirectory(dir: string): Promise<DirectoryContents> {
  const info = await stat(dir).catch(() => undefined);
  if (!info) return { state: "absent", entries: [], description: "nothing" };
  if (!info.isDirectory()) return { state: "file", entries: [], description: "a file, not a directory" };
  const entries = (await readdir(dir)).sort();
  if (entries.length === 0) return { state: "empty", entries, description: "nothing" };
  if (entries.includes(MANIFEST_FILE)) {
    const manifest = await readManifest(dir).catch(() => undefined);
    if (!manifest) return { state: "occupied", entries, description: `a package whose ${MANIFEST_FILE} cannot be read` };
    return { state: "occupied", entries, packageKind: manifest.kind, description: `an ${manifest.kind} package` };
  }
  const writtenBy = entries.includes(OUTPUT_MARKER) ? await markerVerb(dir) : undefined;
  if (writtenBy) return { state: "occupied", entries, writtenBy, description: `a checkpoint written by offtune ${writtenBy}` };
  if (entries.includes("config.json")) return { state: "occupied", entries, description: `a model checkpoint (${list(entries)})` };
  return { state: "occupied", entries, description: `other files (${list(entries)})` };
}

/** Whether `contents` is an output of `kind` written by `verb`. */
function isOwnOutput(contents: DirectoryContents, kind: OutputKind, verb: string): boolean {
  if ("package" in kind) return contents.packageKind === kind.package;
  if ("marker" in kind) return contents.writtenBy === verb;
  return contents.entries.includes(kind.holds);
}

/** In words, what a verb writing `kind` replaces without `--force`. */
function ownOutputDescription(kind: OutputKind, verb: string): string {
  if ("package" in kind) return `an ${kind.package} package`;
  if ("marker" in kind) return `a checkpoint written by offtune ${verb}`;
  return kind.what;
}

/**
 * The real path of `path` (symlinks resolved) even when its tail does not
 * exist yet: the deepest existing ancestor is resolved and the rest appended.
 */
async function realPathOf(path: string): Promise<string> {
  const absolute = resolve(path);
  const missing: string[] = [];
  let existing = absolute;
  for (;;) {
    try {
      return join(await realpath(existing), ...missing.reverse());
    } catch {
      const parent = dirname(existing);
      if (parent === existing) return absolute;
      missing.push(basename(existing));
      existing = parent;
    }
  }
}

/** Whether real path `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep));
}

/**
 * Checks that the verb may write `request.path` (module doc): it must not
 * be, hold or lie inside an input; and it must be absent, empty, or an
 * output of the verb's kind, unless `--force` was given. A file in the way is
 * refused even with `--force`.
 *
 * @throws Error `Refusing to write to --out "<path>": <why>` naming the path
 *   and the problem
 */
export async function checkOutputDir(request: OutputRequest): Promise<void> {
  const { verb, flag, path, kind } = request;
  const refuse = (why: string): never => {
    throw new Error(`Refusing to write to --${flag} "${path}": ${why}`);
  };
  const out = await realPathOf(path);
  for (const [inputFlag, input] of Object.entries(request.inputs)) {
    if (input === undefined) continue;
    const source = await realPathOf(input);
    if (source === out) refuse(`it is the --${inputFlag} input`);
    if (within(out, source)) refuse(`it lies inside the --${inputFlag} input "${input}"`);
    if (within(source, out)) refuse(`it contains the --${inputFlag} input "${input}"`);
  }
  const contents = await describeDirectory(path);
  if (contents.state === "file") refuse("it is a file, not a directory; remove it or choose another directory");
  if (contents.state !== "occupied" || isOwnOutput(contents, kind, verb)) return;
  const own = ownOutputDescription(kind, verb);
  if (request.force === undefined) {
    refuse(`it holds ${contents.description}, and ${verb} only writes over ${own}; choose another directory`);
  }
  if (!request.force) {
    refuse(
      `it holds ${contents.description}, and ${verb} only replaces ${own}; ` +
        `choose another directory, or pass --force to replace it (the old one is kept until the new one is complete)`,
    );
  }
}

/** The marker file's content for a checkpoint written by `verb` (see {@link OUTPUT_MARKER}). */
export function outputMarker(verb: string): string {
  return JSON.stringify({ writtenBy: verb }) + "\n";
}
