// Every docs page the code cites exists, and so does every section it cites:
// `docs/METHOD.md §N` needs a `## N.` heading, `§N "phrase"` needs the phrase in
// section N, and `docs/DESIGN.md "Title"` needs a heading that starts with Title.
// Also checks the relative links between docs/ pages.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");

/** Files under `dir` (recursively) whose names end with one of `exts`. */
function filesUnder(dir: string, exts: string[]): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "node_modules" || name === "api" ? [] : filesUnder(path, exts);
    return exts.some((e) => name.endsWith(e)) ? [path] : [];
  });
}

/** A doc page cut into sections: heading text → body (heading line included). */
interface Page {
  headings: string[];
  /** Numbered `## N. …` sections' text, whitespace collapsed. */
  numbered: Map<string, string>;
}

const collapse = (text: string) => text.replace(/\s+/g, " ").toLowerCase();

function parsePage(markdown: string): Page {
  const headings: string[] = [];
  const numbered = new Map<string, string>();
  let current: string | undefined;
  for (const line of markdown.split("\n")) {
    const h = /^(#{2,4}) (.+)$/.exec(line);
    if (h) {
      headings.push(h[2].trim());
      if (h[1] === "##") current = /^(\d+)\./.exec(h[2])?.[1];
    }
    if (current !== undefined) numbered.set(current, (numbered.get(current) ?? "") + " " + line);
  }
  for (const [k, v] of numbered) numbered.set(k, collapse(v));
  return { headings, numbered };
}

/** Joins a comment's continuation lines, so a citation broken over lines reads as one. */
const unwrapComments = (source: string) => source.replace(/\n[ \t]*(?:\*(?!\/)|\/\/|#)?[ \t]*/g, " ");

/** The citation's tail: up to the first `)`, `;` or sentence end outside double quotes, at most 120 chars. */
function citationTail(text: string): string {
  let inQuote = false;
  for (let i = 0; i < Math.min(text.length, 120); i++) {
    const c = text[i];
    if (c === '"') inQuote = !inQuote;
    else if (!inQuote && (c === ")" || c === ";" || (c === "." && text[i + 1] === " "))) return text.slice(0, i);
  }
  return text.slice(0, 120);
}

/** One cited location: `page` with a numbered `section` and/or a quoted `phrase`. */
interface Citation {
  file: string;
  page: string;
  section?: string;
  phrase?: string;
}

/** The citations of `docs/<PAGE>.md` in `source` (in docs/ pages, the sibling `<PAGE>.md` too). */
function findCitations(file: string, source: string, inDocs: boolean): Citation[] {
  const text = unwrapComments(source);
  const out: Citation[] = [];
  // In docs/ a bare `METHOD.md` is the sibling page; `fixtures/README.md` and the like are not docs pages.
  const pattern = inDocs ? /(?:(?<![\w/])docs\/|(?<![\w/.-]))([A-Z][A-Z_]+)\.md\b/g : /docs\/([A-Z][A-Z_]+)\.md\b/g;
  for (const m of text.matchAll(pattern)) {
    const page = m[1];
    out.push({ file, page });
    const tail = citationTail(text.slice(m.index + m[0].length));
    for (const s of tail.matchAll(/§(\d+)(?:-(\d+))?(?:[,:]?\s*"([^"]+)")?/g)) {
      const last = s[2] === undefined ? Number(s[1]) : Number(s[2]);
      for (let n = Number(s[1]); n <= last; n++) out.push({ file, page, section: String(n) });
      if (s[3] !== undefined) out.push({ file, page, section: s[1], phrase: s[3] });
    }
    const quoted = /^\s*[,:]?\s*"([^"]+)"/.exec(tail);
    if (quoted && !/^\s*[,:]?\s*§/.test(tail)) out.push({ file, page, phrase: quoted[1] });
  }
  return out;
}

/** Why `c` does not resolve against `docsDir`, or null when it does. */
function checkCitation(c: Citation, pages: Map<string, Page | null>): string | null {
  const page = pages.get(c.page);
  if (!page) return `${c.file}: docs/${c.page}.md does not exist`;
  if (c.section !== undefined) {
    const body = page.numbered.get(c.section);
    if (body === undefined) return `${c.file}: docs/${c.page}.md has no section ${c.section} ("## ${c.section}. …")`;
    if (c.phrase !== undefined && !body.includes(collapse(c.phrase))) {
      return `${c.file}: docs/${c.page}.md §${c.section} does not contain "${c.phrase}"`;
    }
  } else if (c.phrase !== undefined) {
    if (!page.headings.some((h) => h.toLowerCase().startsWith(c.phrase!.toLowerCase()))) {
      return `${c.file}: docs/${c.page}.md has no heading "${c.phrase}"`;
    }
  }
  return null;
}

function loadPages(): Map<string, Page | null> {
  const pages = new Map<string, Page | null>();
  for (const name of readdirSync(join(root, "docs"))) {
    if (name.endsWith(".md")) pages.set(name.slice(0, -3), parsePage(readFileSync(join(root, "docs", name), "utf8")));
  }
  return pages;
}

describe("docs citations", () => {
  const pages = loadPages();
  const sources = [
    ...filesUnder(join(root, "src"), [".ts", ".mjs"]),
    ...filesUnder(join(root, "pipelines"), [".ts", ".py"]),
    ...filesUnder(join(root, "test"), [".ts"]),
    join(root, "mod.ts"),
  ];
  const docPages = filesUnder(join(root, "docs"), [".md"]);

  it("every cited docs page and section exists", () => {
    const citations = [
      ...sources.flatMap((f) => findCitations(relative(root, f), readFileSync(f, "utf8"), false)),
      ...docPages.flatMap((f) => findCitations(relative(root, f), readFileSync(f, "utf8"), true)),
    ].filter((c) => c.file !== "test/docs/citations.test.ts");
    // The code cites both pages by section (a guard against a parser that finds nothing).
    expect(citations.filter((c) => c.page === "METHOD" && c.section).length).toBeGreaterThan(50);
    expect(citations.filter((c) => c.page === "DESIGN" && c.phrase).length).toBeGreaterThan(40);
    const broken = citations.map((c) => checkCitation(c, pages)).filter((e) => e !== null);
    expect(broken).toEqual([]);
  });

  it("no file cites METHOD.md or DESIGN.md outside docs/ without the docs/ prefix", () => {
    const bare = sources.flatMap((f) => {
      const text = readFileSync(f, "utf8");
      return [...text.matchAll(/(?<![\w/])(?:METHOD|DESIGN|GUIDE|SHARDS|REPORT|GRADOT)\.md/g)].map(() => relative(root, f));
    }).filter((f) => f !== "test/docs/citations.test.ts");
    expect([...new Set(bare)]).toEqual([]);
  });

  it("relative links between docs pages resolve", () => {
    const broken: string[] = [];
    for (const f of [...docPages, join(root, "README.md")]) {
      for (const m of readFileSync(f, "utf8").matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(m[1])) continue;
        if (!existsSync(resolve(dirname(f), m[1]))) broken.push(`${relative(root, f)} → ${m[1]}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("reports a missing section, a missing phrase and a missing heading", () => {
    const pages = new Map<string, Page | null>([
      ["METHOD", parsePage("# M\n\n## 1. One\n\ntext about\nthe split\n\n## 2. Two\n\n### Hessian by KFAC\n")],
      ["DESIGN", parsePage("# D\n\n## The shape in one picture\n")],
    ]);
    const source = `/**
 * a (docs/METHOD.md §1-2, §3) b (docs/METHOD.md §2 "Hessian by KFAC"; c)
 * d (docs/METHOD.md §1: "the split") e (docs/DESIGN.md "The shape") f (docs/DESIGN.md
 * "Scale") g (docs/METHOD.md §2 "DRD") h docs/NOPE.md
 */`;
    const errors = findCitations("x.ts", source, false).map((c) => checkCitation(c, pages)).filter((e) => e !== null);
    expect(errors).toEqual([
      "x.ts: docs/METHOD.md has no section 3 (\"## 3. …\")",
      "x.ts: docs/DESIGN.md has no heading \"Scale\"",
      "x.ts: docs/METHOD.md §2 does not contain \"DRD\"",
      "x.ts: docs/NOPE.md does not exist",
    ]);
  });
});
