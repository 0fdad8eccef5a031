/** Byte classes of RFC 9110/9112 as lookup tables (one array read per byte, no regex). */

function table(pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = pred(c) ? 1 : 0;
  return t;
}

const TCHAR_EXTRA = "!#$%&'*+-.^_`|~";

/** tchar: the characters of a token (method, header name, transfer coding). */
export const TOKEN = table((c) =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
  TCHAR_EXTRA.includes(String.fromCharCode(c))
);

/** field-vchar / SP / HTAB: what a header value may hold (obs-text 0x80-0xFF included, as RFC 9110 allows). */
export const FIELD_VALUE = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/** A request-target: visible US-ASCII only (no SP, no CTL, no obs-text). */
export const TARGET = table((c) => c > 0x20 && c < 0x7f);

/** Hex digit value + 1 (0: not a hex digit). */
export const HEX = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) {
    if (c >= 0x30 && c <= 0x39) t[c] = c - 0x30 + 1;
    else if (c >= 0x41 && c <= 0x46) t[c] = c - 0x41 + 11;
    else if (c >= 0x61 && c <= 0x66) t[c] = c - 0x61 + 11;
  }
  return t;
})();

export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;
export const COLON = 58;

const decoder = new TextDecoder("utf-8");

/**
 * Bytes [s, e) as a string, one char per byte (latin1). ASCII goes through TextDecoder (native);
 * bytes above 0x7f are mapped one to one, as Node does for header values.
 */
export function latin1(buf: Uint8Array, s: number, e: number, ascii = true): string {
  if (ascii && e - s > 64) return decoder.decode(buf.subarray(s, e));
  let out = "";
  for (let i = s; i < e; i += 4096) {
    out += String.fromCharCode.apply(null, buf.subarray(i, Math.min(e, i + 4096)) as unknown as number[]);
  }
  return out;
}
