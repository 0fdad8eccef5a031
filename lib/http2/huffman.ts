/**
 * HPACK's static Huffman code (RFC 7541 section 5.2 and appendix B): encoding, and a strict decoder
 * that rejects padding longer than 7 bits, padding that is not the EOS prefix, and EOS itself.
 */
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./huffman_table.ts";

/** Decoding tree as flat arrays: node i has children left[i]/right[i]; leaves hold sym >= 0. */
const left: number[] = [0];
const right: number[] = [0];
const sym: number[] = [-1];

function addCode(code: number, len: number, symbol: number) {
  let node = 0;
  for (let bit = len - 1; bit >= 0; bit--) {
    const one = (code >>> bit) & 1;
    const next = one ? right : left;
    if (!next[node]) {
      left.push(0);
      right.push(0);
      sym.push(-1);
      next[node] = sym.length - 1;
    }
    node = next[node];
  }
  sym[node] = symbol;
}
for (let s = 0; s < 256; s++) addCode(HUFFMAN_CODES[s], HUFFMAN_LENGTHS[s], s);
addCode(0x3fffffff, 30, 256);

export class HuffmanError extends Error {}

/** Decodes `src`; throws HuffmanError on invalid input or when the result would exceed `maxLen`. */
export function huffmanDecode(src: Uint8Array, maxLen: number): Uint8Array {
  const out = new Uint8Array(Math.min(maxLen, Math.ceil((src.byteLength * 8) / 5)));
  return out.subarray(0, huffmanDecodeInto(src, 0, src.byteLength, out, out.byteLength));
}

/**
 * Decodes `src[from, to)` into `out` (no allocation: the HPACK decoder passes a reused buffer);
 * returns the decoded length. Throws HuffmanError on invalid input or when the result would
 * exceed `maxLen` (at most `out.byteLength`).
 */
export function huffmanDecodeInto(
  src: Uint8Array,
  from: number,
  to: number,
  out: Uint8Array,
  maxLen: number,
): number {
  let n = 0;
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (let i = from; i < to; i++) {
    const b = src[i];
    for (let bit = 7; bit >= 0; bit--) {
      const one = (b >>> bit) & 1;
      node = one ? right[node] : left[node];
      depth++;
      if (!one) allOnes = false;
      if (!node) throw new HuffmanError("invalid Huffman code");
      const s = sym[node];
      if (s >= 0) {
        if (s === 256) throw new HuffmanError("EOS in a Huffman string");
        if (n >= maxLen) throw new HuffmanError("Huffman string too long");
        out[n++] = s;
        node = 0;
        depth = 0;
        allOnes = true;
      }
    }
  }
  if (depth > 7) throw new HuffmanError("Huffman padding longer than 7 bits");
  if (!allOnes) throw new HuffmanError("Huffman padding is not the EOS prefix");
  return n;
}

export function huffmanLength(src: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < src.byteLength; i++) bits += HUFFMAN_LENGTHS[src[i]];
  return Math.ceil(bits / 8);
}

export function huffmanEncode(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(huffmanLength(src));
  let acc = 0; // pending bits, at most 7 + 30 wide: kept as a float-safe number
  let accBits = 0;
  let n = 0;
  for (let i = 0; i < src.byteLength; i++) {
    const len = HUFFMAN_LENGTHS[src[i]];
    acc = acc * 2 ** len + HUFFMAN_CODES[src[i]];
    accBits += len;
    while (accBits >= 8) {
      accBits -= 8;
      const byte = Math.floor(acc / 2 ** accBits);
      out[n++] = byte;
      acc -= byte * 2 ** accBits;
    }
  }
  if (accBits > 0) out[n++] = (acc * 2 ** (8 - accBits)) | ((1 << (8 - accBits)) - 1);
  return out;
}

/** huffmanLength of a latin1 string's bytes (each char code & 0xff), without making the bytes. */
export function huffmanLengthOfString(src: string): number {
  let bits = 0;
  for (let i = 0; i < src.length; i++) bits += HUFFMAN_LENGTHS[src.charCodeAt(i) & 0xff];
  return Math.ceil(bits / 8);
}

/** huffmanEncode of a latin1 string's bytes into `out` at `at`; returns the end offset. */
export function huffmanEncodeStringInto(src: string, out: Uint8Array, at: number): number {
  let acc = 0;
  let accBits = 0;
  let n = at;
  for (let i = 0; i < src.length; i++) {
    const c = src.charCodeAt(i) & 0xff;
    const len = HUFFMAN_LENGTHS[c];
    acc = acc * 2 ** len + HUFFMAN_CODES[c];
    accBits += len;
    while (accBits >= 8) {
      accBits -= 8;
      const byte = Math.floor(acc / 2 ** accBits);
      out[n++] = byte;
      acc -= byte * 2 ** accBits;
    }
  }
  if (accBits > 0) out[n++] = (acc * 2 ** (8 - accBits)) | ((1 << (8 - accBits)) - 1);
  return n;
}
