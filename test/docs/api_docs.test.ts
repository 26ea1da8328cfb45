// The API reference (`npm run docs`: `deno doc --html` over mod.ts) documents
// every export: `deno doc --lint mod.ts` reports no missing doc comment in
// this repository's files. Its other findings are left out: those in
// node_modules (tfjs, re-exported whole as `tf`, is documented upstream) and
// `private-type-ref` (a type a public signature uses but mod.ts does not export).
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");

/** `file:line` and source line of every `missing-jsdoc` finding in `output` outside node_modules. */
function undocumented(output: string): string[] {
  // deno colours its output even when piped; strip the escapes first.
  const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
  const found: string[] = [];
  for (const m of plain.matchAll(/^error\[missing-jsdoc\][^\n]*\n\s*--> ([^\n]+)\n[^\n]*\n\s*\d+ \|([^\n]*)/gm)) {
    const [where, line] = [m[1].replace(`${root}/`, ""), m[2].trim()];
    // `tf` is tfjs's namespace, imported then re-exported; deno doc asks for a doc on the import.
    if (where.includes("node_modules") || line === 'import * as tf from "@tensorflow/tfjs";') continue;
    found.push(`${where}: ${line}`);
  }
  return found;
}

describe("API reference", () => {
  it("deno doc --lint mod.ts finds no undocumented export of ours", () => {
    const run = spawnSync(join(root, "node_modules", ".bin", "deno"), ["doc", "--lint", "mod.ts"], {
      cwd: root,
      encoding: "utf8",
      maxBuffer: 64 * 2 ** 20,
    });
    expect(run.error).toBeUndefined();
    const output = run.stdout + run.stderr;
    // The linter ran to the end: it passed, or it counted its findings (tfjs's, at least).
    expect(run.status === 0 || /Found \S+ documentation lint errors/.test(output.replace(/\x1b\[[0-9;]*m/g, ""))).toBe(true);
    expect(undocumented(output)).toEqual([]);
  }, 120_000);

  it("the finding parser reports an undocumented export of ours and skips node_modules", () => {
    const sample = [
      "\x1b[31merror\x1b[0m[missing-jsdoc]: exported symbol is missing JSDoc documentation",
      `  --> ${root}/src/io/example.ts:12:3`,
      "   | ",
      "12 |   width: number;",
      "error[missing-jsdoc]: exported symbol is missing JSDoc documentation",
      `  --> ${root}/node_modules/@tensorflow/tfjs-core/dist/base.d.ts:3:1`,
      "   | ",
      " 3 | export declare const x = 1;",
    ].join("\n");
    expect(undocumented(sample)).toEqual(["src/io/example.ts:12:3: width: number;"]);
  });
});
