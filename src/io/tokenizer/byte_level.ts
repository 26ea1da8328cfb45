/**
 * GPT-2's byte-level alphabet: every byte 0-255 maps to one printable
 * Unicode character (`bytes_to_unicode` in openai/gpt-2 `encoder.py`), so a
 * BPE vocabulary over those characters covers any UTF-8 text with no unknown
 * token. Shared by the tokenizer (encode/decode) and the BPE trainer.
 *
 * @module
 */

/**
 * GPT-2's pre-tokenization pattern (use with the `gu` flags): contractions,
 * optional-space-prefixed letters, digits and other runs, then whitespace.
 */
export const GPT2_SPLIT_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
}

/** `BYTE_TO_CHAR[b]` is the character standing for byte `b`. */
export const BYTE_TO_CHAR: readonly string[] = bytesToUnicode();

/** The inverse of {@link BYTE_TO_CHAR}. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** Maps text to its UTF-8 bytes, each written as its byte-level character. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/**
 * Bytes of a token string: the byte-level characters mapped back, or, if the
 * token holds a character outside the alphabet (an added token such as
 * `" <mask>"`), its plain UTF-8 bytes, as Hugging Face's ByteLevel decoder does.
 */
export function fromByteLevel(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]);
    if (b === undefined) return utf8.encode(token);
    out[i] = b;
  }
  return out;
}
