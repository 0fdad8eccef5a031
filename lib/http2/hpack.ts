/**
 * HPACK (RFC 7541): a header-block encoder and a strict decoder, each with its own dynamic table.
 * The decoder bounds everything a peer controls: the dynamic table by the size we announced, each
 * string and the whole decoded list by `maxHeaderListSize` (name + value + 32 per field, as
 * SETTINGS_MAX_HEADER_LIST_SIZE counts), and integers to 2^31.
 */
import {
  huffmanDecodeInto,
  huffmanEncodeStringInto,
  HuffmanError,
  huffmanLengthOfString,
} from "./huffman.ts";

export type HeaderField = [name: string, value: string];

// deno-fmt-ignore
const STATIC: readonly HeaderField[] = [
  ["", ""], // index 0 is unused
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""],
  ["cache-control", ""], ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""],
  ["content-length", ""], ["content-location", ""], ["content-range", ""], ["content-type", ""],
  ["cookie", ""], ["date", ""], ["etag", ""], ["expect", ""], ["expires", ""], ["from", ""], ["host", ""],
  ["if-match", ""], ["if-modified-since", ""], ["if-none-match", ""], ["if-range", ""],
  ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""], ["location", ""], ["max-forwards", ""],
  ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""],
  ["retry-after", ""], ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""],
  ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""], ["www-authenticate", ""],
];
const STATIC_LEN = STATIC.length - 1;
const STATIC_BY_PAIR = new Map<string, number>();
const STATIC_BY_NAME = new Map<string, number>();
/** Names with a value in the static table: only these need the (allocating) pair lookup. */
const STATIC_PAIR_NAMES = new Set<string>();
for (let i = STATIC_LEN; i >= 1; i--) {
  STATIC_BY_PAIR.set(`${STATIC[i][0]}\0${STATIC[i][1]}`, i);
  STATIC_BY_NAME.set(STATIC[i][0], i);
  if (STATIC[i][1]) STATIC_PAIR_NAMES.add(STATIC[i][0]);
}

export class HpackError extends Error {
  readonly code = "EPROTO";
}

const latin1 = new TextDecoder("latin1");
const EMPTY = new Uint8Array(0);
/**
 * Reused by the (synchronous) decoder for Huffman strings and the encoder for blocks up to this
 * size: the common case allocates nothing but the result. Longer strings and blocks get a buffer
 * of their own for that one call (the decoder's still bounded by maxHeaderListSize).
 */
const SCRATCH_BYTES = 4096;
const DECODE_SCRATCH = new Uint8Array(SCRATCH_BYTES);
const ENCODE_SCRATCH = new Uint8Array(SCRATCH_BYTES);

/** Where the encoder writes a block: the shared scratch, or a larger buffer of its own. */
class BlockWriter {
  buf = ENCODE_SCRATCH;
  n = 0;
  reserve(k: number) {
    if (this.n + k <= this.buf.byteLength) return;
    const bigger = new Uint8Array(Math.max(this.buf.byteLength * 2, this.n + k));
    bigger.set(this.buf.subarray(0, this.n));
    this.buf = bigger;
  }
  byte(b: number) {
    this.reserve(1);
    this.buf[this.n++] = b;
  }
}

function entrySize(f: HeaderField): number {
  return f[0].length + f[1].length + 32;
}

/** The dynamic table: newest first. */
class DynamicTable {
  entries: HeaderField[] = [];
  size = 0;
  constructor(public maxSize: number) {}

  add(f: HeaderField) {
    const s = entrySize(f);
    this.evictTo(this.maxSize - s);
    // An entry larger than the table empties it and is not added (RFC 7541 section 4.4).
    if (s <= this.maxSize) {
      this.entries.unshift(f);
      this.size += s;
    }
  }

  evictTo(limit: number) {
    while (this.size > Math.max(0, limit) && this.entries.length) {
      this.size -= entrySize(this.entries.pop()!);
    }
  }

  resize(max: number) {
    this.maxSize = max;
    this.evictTo(max);
  }
}

export interface DecoderOptions {
  /** The SETTINGS_HEADER_TABLE_SIZE we announced: the peer's table updates may not exceed it. */
  maxTableSize?: number;
  /** Bound on one decoded block (names + values + 32 per field). */
  maxHeaderListSize?: number;
}

export class HpackDecoder {
  readonly table: DynamicTable;
  readonly maxTableSize: number;
  readonly maxHeaderListSize: number;

  constructor(opts: DecoderOptions = {}) {
    this.maxTableSize = opts.maxTableSize ?? 4096;
    this.maxHeaderListSize = opts.maxHeaderListSize ?? 256 * 1024;
    this.table = new DynamicTable(this.maxTableSize);
  }

  /** The dynamic table's entries, newest first (for tests). */
  get entries(): readonly HeaderField[] {
    return this.table.entries;
  }

  get tableSize(): number {
    return this.table.size;
  }

  /**
   * Decodes one complete header block. Throws HpackError (a COMPRESSION_ERROR) on bad input or
   * when the list exceeds the bound; the table is then out of step and the connection must end.
   */
  // The block being decoded and the read position: fields, not closures, so a decode allocates
  // only its fields (this runs for every response head).
  #block: Uint8Array = EMPTY;
  #pos = 0;

  decode(block: Uint8Array): HeaderField[] {
    this.#block = block;
    this.#pos = 0;
    try {
      return this.#decode();
    } finally {
      this.#block = EMPTY;
    }
  }

  #decode(): HeaderField[] {
    const block = this.#block;
    const out: HeaderField[] = [];
    let listSize = 0;
    let fieldsSeen = false;
    while (this.#pos < block.byteLength) {
      const b = block[this.#pos];
      let f: HeaderField;
      if (b & 0x80) {
        f = this.#lookup(this.#int(7));
      } else if (b & 0x40) {
        const idx = this.#int(6);
        const name = idx ? this.#lookup(idx)[0] : this.#str();
        f = [name, this.#str()];
        this.table.add(f);
      } else if (b & 0x20) {
        // Table size updates come first in a block (section 4.2).
        if (fieldsSeen) throw new HpackError("table size update after a field");
        const size = this.#int(5);
        if (size > this.maxTableSize) throw new HpackError("table size update over the announced limit");
        this.table.resize(size);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const idx = this.#int(4);
        const name = idx ? this.#lookup(idx)[0] : this.#str();
        f = [name, this.#str()];
      }
      listSize += entrySize(f);
      if (listSize > this.maxHeaderListSize) throw new HpackError("header list too large");
      out.push(f);
      fieldsSeen = true;
    }
    return out;
  }

  #int(prefixBits: number): number {
    const block = this.#block;
    if (this.#pos >= block.byteLength) throw new HpackError("header block truncated");
    const max = (1 << prefixBits) - 1;
    let v = block[this.#pos++] & max;
    if (v < max) return v;
    let shift = 0;
    for (;;) {
      if (this.#pos >= block.byteLength) throw new HpackError("integer truncated");
      const b = block[this.#pos++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (v > 0x7fffffff) throw new HpackError("integer too large");
      if (!(b & 0x80)) return v;
    }
  }

  #str(): string {
    const block = this.#block;
    if (this.#pos >= block.byteLength) throw new HpackError("header block truncated");
    const huff = (block[this.#pos] & 0x80) !== 0;
    const len = this.#int(7);
    const from = this.#pos;
    if (len > block.byteLength - from) throw new HpackError("string truncated");
    this.#pos += len;
    if (!huff) {
      if (len > this.maxHeaderListSize) throw new HpackError("header list too large");
      return latin1.decode(block.subarray(from, from + len));
    }
    // Huffman output is at most 8/5 of its input, and never more than the list bound.
    const most = Math.min(this.maxHeaderListSize, Math.ceil((len * 8) / 5));
    const out = most <= DECODE_SCRATCH.byteLength ? DECODE_SCRATCH : new Uint8Array(most);
    try {
      const n = huffmanDecodeInto(block, from, from + len, out, most);
      return latin1.decode(out.subarray(0, n));
    } catch (e) {
      if (e instanceof HuffmanError) throw new HpackError(e.message);
      throw e;
    }
  }

  #lookup(index: number): HeaderField {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC_LEN) return STATIC[index];
    const f = this.table.entries[index - STATIC_LEN - 1];
    if (!f) throw new HpackError(`index ${index} beyond the tables`);
    return f;
  }
}

export interface EncodeOptions {
  /** Never put into a table and marked never-indexed (credentials). */
  sensitive?: (name: string) => boolean;
}

export class HpackEncoder {
  readonly table: DynamicTable;
  /** A pending size change to announce at the start of the next block. */
  #sizeUpdates: number[] = [];

  /** `huffman`: Huffman-code strings when that is shorter (off only to test against RFC examples). */
  constructor(maxTableSize = 4096, readonly huffman = true) {
    this.table = new DynamicTable(maxTableSize);
  }

  get entries(): readonly HeaderField[] {
    return this.table.entries;
  }

  /** The peer changed SETTINGS_HEADER_TABLE_SIZE: our table may use at most that (we keep <= 4096). */
  setMaxTableSize(peerMax: number): void {
    const size = Math.min(peerMax, 4096);
    if (size === this.table.maxSize) return;
    this.table.resize(size);
    this.#sizeUpdates.push(size);
  }

  encode(fields: readonly HeaderField[], opts: EncodeOptions = {}): Uint8Array {
    const out = new BlockWriter();
    // The smallest size first when it went down and up again, then the final one (section 4.2).
    if (this.#sizeUpdates.length) {
      const ups = this.#sizeUpdates.splice(0);
      const min = Math.min(...ups);
      const last = ups[ups.length - 1];
      pushInt(out, 0x20, 5, min);
      if (last !== min) pushInt(out, 0x20, 5, last);
    }
    for (const [name, value] of fields) {
      const sensitive = opts.sensitive?.(name) ?? false;
      const found = this.#find(name, value);
      if (found.pair && !sensitive) {
        pushInt(out, 0x80, 7, found.pair);
        continue;
      }
      if (sensitive) {
        pushInt(out, 0x10, 4, found.name);
      } else {
        pushInt(out, 0x40, 6, found.name);
        this.table.add([name, value]);
      }
      if (!found.name) pushStr(out, name, this.huffman);
      pushStr(out, value, this.huffman);
    }
    // A copy: the scratch is reused by the next block.
    return out.buf.slice(0, out.n);
  }

  #find(name: string, value: string): { pair: number; name: number } {
    const s = STATIC_PAIR_NAMES.has(name) ? STATIC_BY_PAIR.get(`${name}\0${value}`) : undefined;
    if (s) return { pair: s, name: s };
    let nameIdx = STATIC_BY_NAME.get(name) ?? 0;
    const ents = this.table.entries;
    for (let i = 0; i < ents.length; i++) {
      if (ents[i][0] !== name) continue;
      if (ents[i][1] === value) return { pair: STATIC_LEN + 1 + i, name: nameIdx || STATIC_LEN + 1 + i };
      if (!nameIdx) nameIdx = STATIC_LEN + 1 + i;
    }
    return { pair: 0, name: nameIdx };
  }
}

function pushInt(out: BlockWriter, first: number, prefixBits: number, v: number) {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.byte(first | v);
    return;
  }
  out.byte(first | max);
  v -= max;
  while (v >= 128) {
    out.byte((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.byte(v);
}

/** A string literal: its latin1 bytes (char code & 0xff), Huffman-coded when that is shorter. */
function pushStr(out: BlockWriter, s: string, huffman: boolean) {
  const h = huffman ? huffmanLengthOfString(s) : Infinity;
  if (h <= s.length) {
    pushInt(out, 0x80, 7, h);
    out.reserve(h);
    out.n = huffmanEncodeStringInto(s, out.buf, out.n);
  } else {
    pushInt(out, 0, 7, s.length);
    out.reserve(s.length);
    for (let i = 0; i < s.length; i++) out.buf[out.n++] = s.charCodeAt(i) & 0xff;
  }
}
