/**
 * Just enough RFC 822/MIME decoding to turn a raw email into its subject and
 * readable body text: header unfolding, RFC 2047 encoded words, multipart
 * bodies (first text/plain part, else first text/html part), quoted-printable
 * and base64 transfer encodings, charsets through `TextDecoder`, and HTML
 * reduced to text. Used for the SpamAssassin corpus.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/** What the corpus keeps of an email. */
export interface DecodedEmail {
  subject: string;
  body: string;
}

/** A MIME entity: lowercased header names to unfolded values, and the raw body (latin1 string = bytes). */
interface Entity {
  headers: Map<string, string>;
  body: string;
}

/** Splits a latin1 message string into headers and body at the first empty line. */
function parseEntity(raw: string): Entity {
  const match = /\r?\n\r?\n/.exec(raw);
  const head = match ? raw.slice(0, match.index) : raw;
  const body = match ? raw.slice(match.index + match[0].length) : "";
  const headers = new Map<string, string>();
  let name = "";
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && name !== "") {
      headers.set(name, `${headers.get(name)} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
    else name = "";
  }
  return { headers, body };
}

/** Reads one `key=value` parameter (quoted or not) of a header value. */
function headerParam(value: string, key: string): string | undefined {
  const match = new RegExp(`(?:^|;)\\s*${key}\\s*=\\s*(?:"([^"]*)"|([^;\\s]*))`, "i").exec(value);
  return match ? (match[1] ?? match[2]) : undefined;
}

/** Windows-1252 code points of bytes 0x80-0x9F (WHATWG Encoding; unassigned bytes map to themselves). */
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

/**
 * Decodes windows-1252 (which WHATWG also uses for `iso-8859-1` and
 * `us-ascii` labels) by table: Node 20's `TextDecoder` decodes it as plain
 * Latin-1 (0x92 stays U+0092 instead of U+2019), Deno's follows the spec, and
 * the corpus must come out the same on both.
 */
export function decodeWindows1252(bytes: string): string {
  return bytes.replace(/[\x80-\x9f]/g, (c) => String.fromCharCode(CP1252_HIGH[c.charCodeAt(0) - 0x80]));
}

/** Decodes bytes (given as a latin1 string) in `charset`, falling back to windows-1252 for unknown labels. */
function decodeCharset(bytes: string, charset: string | undefined): string {
  let decoder: TextDecoder | undefined;
  try {
    decoder = new TextDecoder(charset ?? "windows-1252");
  } catch {
    decoder = undefined;
  }
  if (decoder === undefined || decoder.encoding === "windows-1252") return decodeWindows1252(bytes);
  return decoder.decode(Buffer.from(bytes, "latin1"));
}

/** Undoes a quoted-printable transfer encoding (result: latin1 string of bytes). */
export function decodeQuotedPrintable(text: string): string {
  return text
    .replace(/=\r?\n/g, "")
    .replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) in a header value. */
export function decodeEncodedWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, "$1$2")
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_, charset: string, kind: string, text: string) => {
      const bytes = kind.toUpperCase() === "B"
        ? Buffer.from(text, "base64").toString("latin1")
        : decodeQuotedPrintable(text.replace(/_/g, " "));
      return decodeCharset(bytes, charset);
    });
}

const ENTITIES: Record<string, string> = {
  nbsp: " ", amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", copy: "©", reg: "®",
};

/** Reduces HTML to text: drops comments, style, script and head; block tags become line breaks. */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, "")
    .replace(/<(style|script|head|title)\b[\s\S]*?<\/\1\s*>/gi, "")
    .replace(/<(br|p|div|tr|li|h\d|table)\b[^>]*>/gi, "\n")
    .replace(/<[^>]*>/g, "")
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Math.min(Number(n), 0x10ffff)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCodePoint(Math.min(parseInt(n, 16), 0x10ffff)))
    .replace(/&([a-z]+);/gi, (whole, name: string) => ENTITIES[name.toLowerCase()] ?? whole);
}

/** Tidies decoded text: unix newlines, no trailing spaces, runs of blank lines and spaces collapsed. */
function tidy(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/[ \t\u00a0]+/g, " ")
    .replace(/ *\n */g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** The readable text of an entity, or "" when it has none (attachments, images). */
function entityText(entity: Entity, depth: number): string {
  const contentType = entity.headers.get("content-type") ?? "text/plain";
  const type = contentType.split(";")[0].trim().toLowerCase();
  if (type.startsWith("multipart/")) {
    const boundary = headerParam(contentType, "boundary");
    if (boundary === undefined || depth > 4) return "";
    const parts = entity.body.split(`--${boundary}`).slice(1).map((p) => parseEntity(p.replace(/^\r?\n/, "")));
    const texts = parts.map((part) => ({
      type: (part.headers.get("content-type") ?? "text/plain").split(";")[0].trim().toLowerCase(),
      text: entityText(part, depth + 1),
    })).filter((p) => p.text !== "");
    return (texts.find((p) => p.type !== "text/html") ?? texts[0])?.text ?? "";
  }
  if (type !== "text/plain" && type !== "text/html") return "";
  const encoding = (entity.headers.get("content-transfer-encoding") ?? "").trim().toLowerCase();
  const bytes = encoding === "quoted-printable"
    ? decodeQuotedPrintable(entity.body)
    : encoding === "base64"
    ? Buffer.from(entity.body.replace(/\s+/g, ""), "base64").toString("latin1")
    : entity.body;
  const text = decodeCharset(bytes, headerParam(contentType, "charset"));
  return tidy(type === "text/html" ? htmlToText(text) : text);
}

/** Decodes a raw message (its bytes) into subject and body text. */
export function decodeEmail(raw: Uint8Array): DecodedEmail {
  const entity = parseEntity(Buffer.from(raw).toString("latin1"));
  const subject = tidy(decodeEncodedWords(entity.headers.get("subject") ?? ""));
  return { subject, body: entityText(entity, 0) };
}
