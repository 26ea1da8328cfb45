// The library-first rule (README "As a library"): every verb is a thin shell
// over mod.ts, so pipelines/ imports only mod.ts, its flag helpers
// (pipelines/flags.ts) and the CLI room (src/cli/), besides Node built-ins
// and the npm dependencies. The dispatcher (pipelines/offtune.ts) also loads
// the verbs. Scans the import specifiers of every pipelines/*.ts.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PIPELINES = join(ROOT, "pipelines");
const DEPENDENCIES = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies,
);

/** Every module specifier of a source text: static imports and re-exports, side-effect imports, dynamic imports. */
function importSpecifiers(text: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;
  return [...text.matchAll(pattern)].map((m) => m[1]);
}

/** Why `specifier` in pipelines/`file` breaks the rule, or undefined when it is allowed. */
function violation(file: string, specifier: string): string | undefined {
  if (specifier.startsWith("node:")) return undefined;
  if (!specifier.startsWith(".")) {
    const pkg = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0];
    return DEPENDENCIES.includes(pkg) ? undefined : `"${specifier}" is not an npm dependency`;
  }
  const target = relative(ROOT, resolve(dirname(join(PIPELINES, file)), specifier));
  if (target === "mod.ts" || target === "pipelines/flags.ts" || target.startsWith("src/cli/")) return undefined;
  if (file === "offtune.ts" && dirname(target) === "pipelines") return undefined; // the dispatcher loads the verbs
  return `"${specifier}" (${target}) is neither mod.ts, pipelines/flags.ts nor src/cli/`;
}

describe("pipelines/ imports", () => {
  test("the scanner finds every kind of import", () => {
    const text = `import { a } from "../mod.ts";\nimport type { B } from './flags.ts';\nimport "node:process";\n` +
      `export { c } from "../src/x.ts";\nconst d = await import("./inspect.ts");`;
    expect(importSpecifiers(text)).toEqual(["../mod.ts", "./flags.ts", "node:process", "../src/x.ts", "./inspect.ts"]);
    expect(violation("eval.ts", "../src/eval/stats.ts")).toMatch("neither mod.ts");
    expect(violation("demo.ts", "./experiment.ts")).toMatch("neither mod.ts");
    expect(violation("eval.ts", "left-pad")).toMatch("not an npm dependency");
  });

  test("every verb imports only mod.ts, pipelines/flags.ts, src/cli/, Node and the dependencies", () => {
    const files = readdirSync(PIPELINES).filter((f) => f.endsWith(".ts"));
    expect(files).toContain("offtune.ts");
    const problems: string[] = [];
    let scanned = 0;
    for (const file of files) {
      for (const specifier of importSpecifiers(readFileSync(join(PIPELINES, file), "utf8"))) {
        scanned++;
        const why = violation(file, specifier);
        if (why) problems.push(`pipelines/${file}: ${why}`);
      }
    }
    expect(scanned).toBeGreaterThan(files.length);
    expect(problems).toEqual([]);
  });
});
