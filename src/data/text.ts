/**
 * Plain-text helpers shared by the corpus and the task builders: sentence
 * splitting, word lists (for n-gram overlap checks) and word-bounded
 * truncation.
 *
 * @module
 */

/** Abbreviations whose period does not end a sentence. */
const ABBREVIATIONS = new Set([
  "mr", "mrs", "ms", "dr", "jr", "sr", "st", "mt", "gen", "gov", "sen", "rep", "col", "capt",
  "lt", "prof", "rev", "vs", "etc", "no", "co", "inc", "ltd", "messrs", "hon", "u.s", "e.g", "i.e",
]);

/**
 * Splits running text into sentences: a sentence ends at `.`, `!` or `?`
 * (plus closing quotes or brackets) followed by white space and a capital
 * letter, digit or opening quote, unless the word before the period is a
 * known abbreviation or a single capital initial. Line breaks also end a
 * sentence (paragraphs, verses, email lines).
 */
export function splitSentences(text: string): string[] {
  const sentences: string[] = [];
  for (const line of text.split(/\n+/)) {
    let start = 0;
    const boundary = /[.!?]["'”’)\]]*\s+(?=["'“‘(]?[\p{Lu}\p{N}])/gu;
    for (const match of line.matchAll(boundary)) {
      const end = match.index! + match[0].trimEnd().length;
      const before = line.slice(start, end);
      const lastWord = /([\p{L}.]+)[.!?]["'”’)\]]*$/u.exec(before)?.[1]?.toLowerCase() ?? "";
      if (before.endsWith(".") && (ABBREVIATIONS.has(lastWord) || /^\p{L}$/u.test(lastWord))) continue;
      const sentence = before.trim();
      if (sentence !== "") sentences.push(sentence);
      start = match.index! + match[0].length;
    }
    const rest = line.slice(start).trim();
    if (rest !== "") sentences.push(rest);
  }
  return sentences;
}

/** The lowercased words (letter and digit runs) of a text: the unit of the n-gram overlap checks. */
export function wordsOf(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Counts white-space separated words. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/).length;
}

/** Keeps at most `maxWords` white-space separated words, adding "..." when it cut. */
export function truncateWords(text: string, maxWords: number): string {
  const words = text.trim().split(/\s+/);
  return words.length <= maxWords ? text.trim() : `${words.slice(0, maxWords).join(" ")} ...`;
}
