#!/usr/bin/env -S npx tsx
/**
 * `offtune build-fixtures`: rebuilds the project's data fixtures (tokenizer,
 * text splits, token streams, tasks, manifest) from the installed data
 * packages, deterministically (`buildFixtures` of mod.ts; its module notes
 * list the steps).
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { buildFixtures } from "../mod.ts";

/** Help text for the verb. */
export const help = `offtune build-fixtures [--fixtures DIR]

Rebuilds the tokenizer, pretraining text and token streams, and the eight
evaluation tasks from the installed data packages (npm devDependencies and the
Debian packages sword-text-kjv, dict-gcide, dict-foldoc, dict-jargon and
dict-devil). Deterministic: the same packages give the same files. Takes two
to four minutes.

  --fixtures DIR   fixtures root (default: fixtures)`;

/** CLI entry: `offtune build-fixtures [--fixtures DIR]`. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { fixtures: { type: "string", default: "fixtures" } } });
  buildFixtures(values.fixtures!, (line) => console.log(`build-fixtures: ${line}`));
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("build_fixtures.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
