/**
 * Reads the real data sources (npm devDependencies and the Debian package
 * sword-text-kjv) and checks facts known independently of this code, the
 * split, and the holdout guarantee: no task item comes from a document that
 * is pretrained on, and no test item shares a 13-word n-gram with
 * pretraining, validation or calibration text.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { type Document, partition, readSources, type Sources, toDocuments } from "../../src/data/corpus.ts";
import { parseJsonl } from "../../src/data/files.ts";
import { KJV_DEBIAN_PACKAGE, locateKjv } from "../../src/data/packages.ts";
import { splitOf, type SplitName } from "../../src/data/split.ts";
import { TASKS } from "../../src/data/tasks/registry.ts";
import { type McItem, TASK_SPLITS } from "../../src/data/tasks/types.ts";

const ROOT = fileURLToPath(new URL("../../fixtures", import.meta.url));
let sources: Sources;
let docs: Document[];
let parts: Record<SplitName, Document[]>;

/** Reading and MIME-decoding every source takes a few seconds. */
const SLOW_MS = 60_000;

/** Whether Debian's sword-text-kjv is installed; without it these tests skip, saying so in their names. */
const kjvInstalled = (() => {
  try {
    locateKjv();
    return true;
  } catch {
    return false;
  }
})();
const NEEDS_KJV = kjvInstalled ? "" : ` (skipped: needs Debian ${KJV_DEBIAN_PACKAGE}: apt-get install ${KJV_DEBIAN_PACKAGE})`;

beforeAll(() => {
  if (!kjvInstalled) return;
  sources = readSources();
  docs = toDocuments(sources);
  parts = partition(docs);
}, SLOW_MS);

describe.skipIf(!kjvInstalled)(`sources${NEEDS_KJV}`, () => {
  it("reads the whole KJV: 66 books, 1,189 chapters, 31,102 verses (23,145 OT, 7,957 NT)", () => {
    const verses = (t: string) => sources.kjv.filter((c) => c.testament === t).reduce((n, c) => n + c.verses.length, 0);
    expect(new Set(sources.kjv.map((c) => c.osisBook)).size).toBe(66);
    expect(sources.kjv).toHaveLength(1189);
    expect(verses("old")).toBe(23145);
    expect(verses("new")).toBe(7957);
    expect(sources.kjv[0].verses[0]).toBe("In the beginning God created the heaven and the earth.");
    expect(sources.kjv.find((c) => c.id === "kjv:John.11")!.verses[34]).toBe("Jesus wept.");
    expect(sources.kjv.every((c) => c.verses.every((v) => v.length > 0 && !/[<>]/.test(v)))).toBe(true);
  });

  it("reads the Brown Corpus's 500 samples in 15 categories, and State of the Union addresses from 1790", () => {
    expect(sources.brown).toHaveLength(500);
    expect(new Set(sources.brown.map((b) => b.genre)).size).toBe(15);
    expect(sources.brown[0].text.startsWith("The Fulton County Grand Jury said Friday")).toBe(true);
    expect(sources.sotu[0]).toMatchObject({ year: 1790, president: "George Washington" });
    expect(sources.mobyDick.find((m) => m.id === "moby_dick:chapter_1")!.text.startsWith("Call me Ishmael.")).toBe(true);
  });

  it("resolves every WordNet pointer and labels every email", () => {
    const ids = new Set(sources.wordnet.map((s) => s.id));
    const dangling = sources.wordnet.flatMap((s) =>
      [...s.hypernyms, ...s.antonyms.map((a) => a.target)].filter((t) => !ids.has(t)).map((t) => `${s.id} -> ${t}`)
    );
    expect(dangling).toEqual([]);
    expect(sources.wordnet.reduce((n, s) => n + s.antonyms.length, 0)).toBeGreaterThan(7000);
    const dog = sources.wordnet.find((s) => s.lemmas[0] === "dog" && s.pos === "noun")!;
    expect(dog.lemmas).toContain("Canis familiaris");
    expect(sources.spam.filter((e) => e.label === "spam").length).toBeGreaterThan(1800);
    expect(new Set(sources.spam.map((e) => e.id)).size).toBe(sources.spam.length);
  });
});

describe.skipIf(!kjvInstalled)(`split${NEEDS_KJV}`, () => {
  it("puts every document in exactly one split, by its group, with unique ids", () => {
    expect(new Set(docs.map((d) => d.id)).size).toBe(docs.length);
    const total = Object.values(parts).reduce((n, p) => n + p.length, 0);
    expect(total).toBe(docs.length);
    for (const [split, list] of Object.entries(parts)) {
      for (const d of list.slice(0, 200)) expect(splitOf(d.group, d.source)).toBe(split);
    }
    // Emails of one thread never straddle the pretraining/holdout line.
    const placed = new Map<string, SplitName>();
    for (const [split, list] of Object.entries(parts) as Array<[SplitName, Document[]]>) {
      for (const d of list) placed.set(d.id, split);
    }
    const splitsOfThread = new Map<string, Set<SplitName>>();
    for (const d of docs.filter((x) => x.source === "spam")) {
      const seen = splitsOfThread.get(d.group) ?? new Set<SplitName>();
      seen.add(placed.get(d.id)!);
      splitsOfThread.set(d.group, seen);
    }
    expect([...splitsOfThread.values()].filter((s) => s.size > 1)).toEqual([]);
    expect(splitsOfThread.size).toBeLessThan(sources.spam.length); // threads do group emails
  });
});

describe.skipIf(!kjvInstalled)(`holdout${NEEDS_KJV}`, () => {
  const items = TASKS.flatMap((task) =>
    TASK_SPLITS.flatMap((split) => {
      const file = join(ROOT, "data/tasks", task.name, `${split}.jsonl`);
      return (parseJsonl(readFileSync(file, "utf8"), file) as McItem[]).map((item) => ({ task: task.name, split, item }));
    })
  );

  it("takes every task item from a held-out document", () => {
    const byId = new Map(docs.map((d) => [d.id, d]));
    for (const { task, item } of items) {
      const doc = byId.get(item.doc);
      expect(doc, `${task} ${item.id}`).toBeDefined();
      expect(splitOf(doc!.group, doc!.source), `${task} ${item.id} from ${item.doc}`).toBe("holdout");
    }
  });

  it("has no test item sharing a 13-word n-gram with pretraining, validation or calibration text", () => {
    // Independent of src/data/ngram.ts: words numbered by a Map, a polynomial
    // rolling hash mod 2^31-1 to find candidate windows, then an exact string
    // comparison, so the hash can only cost time, never miss an overlap.
    const N = 13;
    const P = 2147483647;
    const B = 65599;
    const words = (text: string) => text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    const number = new Map<string, number>();
    const idOf = (w: string) => number.get(w) ?? 0;
    let top = 1; // B^(N-1) mod P
    for (let k = 1; k < N; k++) top = (top * B) % P;
    const rolling = (ids: number[], visit: (hash: number, end: number) => void) => {
      let h = 0;
      for (let i = 0; i < ids.length; i++) {
        if (i >= N) h = (h - ((ids[i - N] * top) % P) + P) % P;
        h = (h * B + ids[i]) % P;
        if (i >= N - 1) visit(h, i + 1);
      }
    };
    const grams = new Set<string>();
    const hashes = new Set<number>();
    for (const { split, item } of items) {
      if (split !== "test") continue;
      const w = words(`${item.context} ${item.choices[item.gold]}`);
      for (const x of w) if (!number.has(x)) number.set(x, number.size + 1);
      rolling(w.map(idOf), (hash, end) => {
        hashes.add(hash);
        grams.add(w.slice(end - N, end).join(" "));
      });
    }
    expect(grams.size).toBeGreaterThan(10000);
    // Positive control: a window of pretraining text must be found.
    const control = words(parts.train[0].text).slice(0, N);
    for (const x of control) if (!number.has(x)) number.set(x, number.size + 1);
    rolling(control.map(idOf), (hash) => hashes.add(hash));
    grams.add(control.join(" "));
    const found: string[] = [];
    for (const doc of [...parts.train, ...parts.valid, ...parts.calibration]) {
      const w = words(doc.text);
      rolling(w.map(idOf), (hash, end) => {
        if (!hashes.has(hash)) return;
        const gram = w.slice(end - N, end).join(" ");
        if (grams.has(gram)) found.push(`${doc.id}: ${gram}`);
      });
    }
    expect(found.filter((f) => f.endsWith(control.join(" ")))).not.toEqual([]);
    expect(found.filter((f) => !f.endsWith(control.join(" ")))).toEqual([]);
  }, SLOW_MS);
});
