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

/** A string decoded from bytes, remembered by those exact bytes. */
interface Interned {
  bytes: Uint8Array;
  text: string;
  lower: string;
}

/**
 * Remembers the strings of recurring byte sequences (header names, common values), so a busy
 * connection does not build the same short strings for every request. Bounded: once full, new
 * sequences are decoded and not remembered.
 */
export class Interner {
  #map = new Map<number, Interned[]>();
  #size = 0;
  constructor(private maxEntries: number, private maxLength: number) {}

  /** The interned entry for buf[s..e) (decoded as latin1). */
  get(buf: Uint8Array, s: number, e: number, ascii = true): Interned {
    return this.find(buf, s, e) ?? this.add(buf, s, e, ascii);
  }

  /** The entry remembered for exactly buf[s..e), if any. */
  find(buf: Uint8Array, s: number, e: number): Interned | undefined {
    const len = e - s;
    if (len === 0) return EMPTY;
    if (len > this.maxLength) return undefined;
    const list = this.#map.get(keyOf(buf, s, e));
    if (list) {
      outer: for (const it of list) {
        const b = it.bytes;
        for (let i = 0; i < len; i++) if (b[i] !== buf[s + i]) continue outer;
        return it;
      }
    }
    return undefined;
  }

  /** Decodes buf[s..e) and remembers it while there is room. */
  add(buf: Uint8Array, s: number, e: number, ascii = true): Interned {
    const made = this.#make(buf, s, e, ascii);
    if (this.#size < this.maxEntries && e - s <= this.maxLength && e > s) {
      made.bytes = buf.slice(s, e);
      const key = keyOf(buf, s, e);
      const list = this.#map.get(key);
      if (list) list.push(made);
      else this.#map.set(key, [made]);
      this.#size++;
    }
    return made;
  }

  #make(buf: Uint8Array, s: number, e: number, ascii: boolean): Interned {
    const text = latin1(buf, s, e, ascii);
    return { bytes: EMPTY.bytes, text, lower: text.toLowerCase() };
  }
}

function keyOf(buf: Uint8Array, s: number, e: number): number {
  const len = e - s;
  return (len << 16) ^ (buf[s] << 8) ^ buf[e - 1] ^ (buf[s + (len >> 1)] << 20);
}

const EMPTY: Interned = { bytes: new Uint8Array(), text: "", lower: "" };
