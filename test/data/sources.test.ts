import { describe, expect, it } from "vitest";
import { decodeEmail, decodeEncodedWords, decodeQuotedPrintable, decodeWindows1252, htmlToText } from "../../src/data/email.ts";
import { detokenizeBrown, parseBrownFile } from "../../src/data/sources/brown.ts";
import { osisToText } from "../../src/data/sources/kjv.ts";
import { parseSynsetLine, splitGloss } from "../../src/data/sources/wordnet.ts";
import { emailThread } from "../../src/data/corpus.ts";

describe("Brown", () => {
  it("detokenizes punctuation and the corpus's `` '' quotes", () => {
    expect(detokenizeBrown(["He", "said", "``", "no", "''", ",", "(", "twice", ")", "."])).toBe('He said "no", (twice).');
    expect(detokenizeBrown(["by", "Ivan", "Allen", "Jr.", "."])).toBe("by Ivan Allen Jr.");
  });

  it("strips tags, starts paragraphs at tabs and keeps headlines apart", () => {
    const file = [
      "",
      "\tThe/at jury/nn said/vbd ./.",
      "It/pps agreed/vbd ./.",
      "",
      "Merger/nn-hl proposed/vbn-hl ",
      "However/wrb ,/, it/pps did/dod ./.",
      "\tA/at 1/2/cd cup/nn ./.",
    ].join("\n");
    expect(parseBrownFile(file)).toEqual([
      "The jury said. It agreed.",
      "Merger proposed",
      "However, it did.",
      "A 1/2 cup.",
    ]);
  });
});

describe("KJV OSIS markup", () => {
  it("keeps the words, drops notes, tags and pilcrows", () => {
    const osis = '<div type="x-p"/>¶ And <w lemma="strong:H0430">God</w> <transChange type="added">was</transChange> good.' +
      '<note placement="foot"><reference type="annotateRef">1.2 </reference>Heb. note</note> ';
    expect(osisToText(osis)).toBe("And God was good.");
  });
});

describe("WordNet data lines", () => {
  it("parses words, antonym pointers and the gloss (a real data.adj line)", () => {
    const line = "00001740 00 a 01 able 0 005 = 05207437 n 0000 = 05624029 n 0000 + 05624029 n 0101 + 05207437 n 0101 " +
      '! 00002098 a 0101 | (usually followed by `to\') having the necessary means or skill or know-how or authority to do something; "able to swim"; "she was able to program her computer"  ';
    const s = parseSynsetLine(line, "adjective", "data.adj");
    expect(s.id).toBe("wordnet:a00001740");
    expect(s.lemmas).toEqual(["able"]);
    expect(s.hypernyms).toEqual([]);
    expect(s.antonyms).toEqual([{ source: 0, target: "wordnet:a00002098", targetWord: 0 }]);
    expect(s.definition).toBe("(usually followed by `to') having the necessary means or skill or know-how or authority to do something");
    expect(s.examples).toEqual(["able to swim", "she was able to program her computer"]);
  });

  it("reads the word count in hex, hypernyms (also of satellites), and adjective markers", () => {
    const words = Array.from({ length: 10 }, (_, i) => `w_${i}${i === 0 ? "(a)" : ""} 0`).join(" ");
    const line = `01234567 05 n 0a ${words} 002 @ 00000001 n 0000 @i 00000002 s 0000 | a test; "an example"`;
    const s = parseSynsetLine(line, "noun", "data.noun");
    expect(s.lemmas).toHaveLength(10);
    expect(s.lemmas[0]).toBe("w 0");
    expect(s.hypernyms).toEqual(["wordnet:n00000001", "wordnet:a00000002"]);
    expect(splitGloss('no examples here')).toEqual({ definition: "no examples here", examples: [] });
  });

  it("names the file for a malformed line", () => {
    expect(() => parseSynsetLine("garbage", "noun", "data.noun")).toThrow(/Cannot read "data.noun"/);
  });
});

describe("email decoding", () => {
  const raw = (s: string) => new TextEncoder().encode(s);

  it("decodes windows-1252 (and its iso-8859-1 alias) by the WHATWG table on every runtime", () => {
    expect(decodeWindows1252("world\x92s \x93C\x94 \x96 \x80 \x81 caf\xe9")).toBe("world\u2019s \u201cC\u201d \u2013 \u20ac \x81 caf\u00e9");
    const message = "Subject: x\nContent-Type: text/plain; charset=iso-8859-1\n\nit\x92s";
    expect(decodeEmail(Uint8Array.from(message, (c) => c.charCodeAt(0))).body).toBe("it\u2019s");
  });

  it("decodes encoded-word subjects, quoted-printable and charsets", () => {
    expect(decodeQuotedPrintable("caf=E9 =\nsoft")).toBe("caf\u00e9 soft");
    expect(decodeEncodedWords("=?iso-8859-1?Q?caf=E9_au_lait?= =?utf-8?B?w7xiZXI=?=")).toBe("café au laitüber");
    const message = [
      "From: a@b.c",
      "Subject: =?utf-8?B?SGVsbG8=?= there",
      "Content-Type: text/plain; charset=\"iso-8859-1\"",
      "Content-Transfer-Encoding: quoted-printable",
      "",
      "Na=EFve line one,",
      "line two=",
      " joined.",
    ].join("\r\n");
    expect(decodeEmail(raw(message))).toEqual({ subject: "Hello there", body: "Naïve line one,\nline two joined." });
  });

  it("takes the text/plain part of a multipart message, else the HTML part as text", () => {
    const multipart = (parts: string[]) => [
      "Subject: multi",
      'Content-Type: multipart/alternative; boundary="XX"',
      "",
      "preamble",
      ...parts.flatMap((p) => ["--XX", p]),
      "--XX--",
    ].join("\n");
    const html = 'Content-Type: text/html\n\n<html><head><title>t</title></head><body><p>Buy&nbsp;<b>now</b> &amp; save</p><br>Today</body></html>';
    const plain = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" + btoa("Plain words here.");
    expect(decodeEmail(raw(multipart([html, plain]))).body).toBe("Plain words here.");
    expect(decodeEmail(raw(multipart([html]))).body).toBe("Buy now & save\nToday");
    expect(htmlToText("a<!-- hidden -->b<script>x()</script>&#65;&#x42;")).toBe("abAB");
  });

  it("groups replies and list tags into one thread", () => {
    const e = (subject: string) => ({ id: "spam:x/1", label: "ham" as const, group: "x", subject, body: "" });
    expect(emailThread(e("Re: [ILUG] Fwd: Backup solutions"))).toBe("spam-thread:backup solutions");
    expect(emailThread(e("backup  Solutions"))).toBe("spam-thread:backup solutions");
    expect(emailThread(e(""))).toBe("spam:x/1");
  });
});
