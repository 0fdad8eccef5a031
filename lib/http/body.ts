/**
 * Message body framing: decoders for Content-Length, chunked (with trailers) and close-delimited
 * bodies, and the chunked encoder. Decoders hand out views of the input (no copy).
 */
import { CR, HEX, HTAB, LF, SP, TOKEN } from "./chars.ts";
import { badRequest, HttpError } from "./errors.ts";
import { addHeader, type HeaderMap, newHeaderMap } from "./headers.ts";
import { parseField } from "./head_parser.ts";

/** Receives body bytes; the view is only valid until the callback returns unless the input is kept. */
export type OnData = (chunk: Uint8Array) => void;

/** An incremental body decoder. */
export interface BodyDecoder {
  /**
   * Consumes body bytes from `buf[start..]`, passing them to the data callback. Returns the offset
   * past what it consumed (less than `buf.length` only once `done`), or an HttpError. Never throws
   * (unless the callback does).
   */
  feed(buf: Uint8Array, start: number): number | HttpError;
  /** The whole body has been seen. */
  readonly done: boolean;
}

/** A body of exactly `length` bytes. */
export class LengthDecoder implements BodyDecoder {
  constructor(private remaining: number, private onData: OnData) {}
  get done(): boolean {
    return this.remaining === 0;
  }
  /** Bytes still expected. */
  get left(): number {
    return this.remaining;
  }
  feed(buf: Uint8Array, start: number): number {
    const n = Math.min(this.remaining, buf.length - start);
    if (n <= 0) return start;
    this.remaining -= n;
    this.onData(start === 0 && n === buf.length ? buf : buf.subarray(start, start + n));
    return start + n;
  }
}

/** A body that runs until the connection closes (responses only); call `end()` at the close. */
export class CloseDecoder implements BodyDecoder {
  private ended = false;
  constructor(private onData: OnData) {}
  get done(): boolean {
    return this.ended;
  }
  end(): void {
    this.ended = true;
  }
  feed(buf: Uint8Array, start: number): number {
    if (start < buf.length) this.onData(start === 0 ? buf : buf.subarray(start));
    return buf.length;
  }
}

const SIZE = 0, SIZE_DIGITS = 1, SIZE_LF = 3, DATA = 4, DATA_CR = 5, DATA_LF = 6;
const TRAILER_START = 7, TRAILER_LINE = 8, END_LF = 9, DONE = 10;
/** Chunk extension states: `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`. */
const EXT_BWS = 11, EXT_NAME_START = 12, EXT_NAME = 13, EXT_AFTER_NAME = 14, EXT_VAL_START = 15;
const EXT_VAL = 16, EXT_QUOTED = 17, EXT_QUOTED_PAIR = 18, EXT_AFTER_QUOTED = 19;
const SEMI = 0x3b, EQ = 0x3d, DQUOTE = 0x22, BACKSLASH = 0x5c;

/** Most hex digits in a chunk size: 13 keeps it below 2^53. */
const MAX_SIZE_DIGITS = 13;
/** Most bytes of chunk extensions on one chunk line. */
const MAX_EXT_BYTES = 4096;

/**
 * A chunked body (RFC 9112 §7.1): hex sizes with no sign, prefix or whitespace, extensions
 * checked against the grammar (BWS around `;` and `=` allowed, an empty name rejected as llhttp's
 * strict mode does) and skipped (bounded), CRLF strictly after each size and each chunk, trailer
 * fields validated like header fields and collected in `trailers`.
 */
export class ChunkedDecoder implements BodyDecoder {
  private state = SIZE;
  private size = 0;
  private digits = 0;
  private extBytes = 0;
  private line: number[] = [];
  private trailerBytes = 0;
  /** Trailer fields, lower-cased like headers. */
  readonly trailers: HeaderMap = newHeaderMap();

  constructor(private onData: OnData, private maxTrailerBytes = 16 * 1024) {}

  get done(): boolean {
    return this.state === DONE;
  }

  feed(buf: Uint8Array, start: number): number | HttpError {
    try {
      return this.run(buf, start);
    } catch (e) {
      if (e instanceof HttpError) return e;
      throw e;
    }
  }

  private run(buf: Uint8Array, start: number): number {
    let i = start;
    const len = buf.length;
    while (i < len) {
      switch (this.state) {
        case SIZE:
        case SIZE_DIGITS: {
          const c = buf[i];
          const h = HEX[c];
          if (h !== 0) {
            if (++this.digits > MAX_SIZE_DIGITS) throw badRequest("chunk size too large");
            this.size = this.size * 16 + (h - 1);
            this.state = SIZE_DIGITS;
          } else if (this.state === SIZE) throw badRequest("invalid chunk size");
          else if (c === CR) this.state = SIZE_LF;
          else if (c === SEMI) this.state = EXT_NAME_START;
          else if (c === SP || c === HTAB) this.state = EXT_BWS;
          else throw badRequest("invalid chunk size");
          i++;
          break;
        }
        case EXT_BWS:
        case EXT_NAME_START:
        case EXT_NAME:
        case EXT_AFTER_NAME:
        case EXT_VAL_START:
        case EXT_VAL:
        case EXT_QUOTED:
        case EXT_QUOTED_PAIR:
        case EXT_AFTER_QUOTED:
          if (++this.extBytes > MAX_EXT_BYTES) throw badRequest("chunk extensions too long");
          this.state = extension(this.state, buf[i++]);
          break;
        case SIZE_LF:
          if (buf[i] !== LF) throw badRequest("chunk size line without LF after CR");
          i++;
          this.state = this.size === 0 ? TRAILER_START : DATA;
          this.digits = 0;
          this.extBytes = 0;
          break;
        case DATA: {
          const n = Math.min(this.size, len - i);
          this.size -= n;
          const view = buf.subarray(i, i + n);
          i += n;
          if (this.size === 0) this.state = DATA_CR;
          this.onData(view);
          break;
        }
        case DATA_CR:
          if (buf[i] !== CR) throw badRequest("chunk data longer than its size");
          i++;
          this.state = DATA_LF;
          break;
        case DATA_LF:
          if (buf[i] !== LF) throw badRequest("chunk data without CRLF");
          i++;
          this.state = SIZE;
          break;
        case TRAILER_START:
          if (buf[i] === CR) {
            this.state = END_LF;
            i++;
            break;
          }
          this.state = TRAILER_LINE;
          // falls through
        case TRAILER_LINE: {
          const c = buf[i++];
          if (++this.trailerBytes > this.maxTrailerBytes) {
            throw new HttpError(431, "trailer section too large");
          }
          if (c !== LF) {
            this.line.push(c);
            break;
          }
          const line = this.line;
          if (line.length === 0 || line[line.length - 1] !== CR) {
            throw badRequest("line ending without CR (bare LF)");
          }
          const bytes = Uint8Array.from(line);
          const [, name, value] = parseField(bytes, 0, bytes.length - 1);
          addHeader(this.trailers, name, value);
          this.line = [];
          this.state = TRAILER_START;
          break;
        }
        case END_LF:
          if (buf[i] !== LF) throw badRequest("chunked body without final CRLF");
          i++;
          this.state = DONE;
          return i;
        case DONE:
          return i;
      }
    }
    return i;
  }
}

/** The next state of the chunk-extension grammar after byte `c`; throws on a byte it does not allow. */
function extension(state: number, c: number): number {
  const ws = c === SP || c === HTAB;
  switch (state) {
    case EXT_BWS: // after the size or a value: only whitespace, then ";"
      if (ws) return EXT_BWS;
      if (c === SEMI) return EXT_NAME_START;
      throw badRequest("invalid chunk extension: whitespace not followed by ';'");
    case EXT_NAME_START:
      if (ws) return EXT_NAME_START;
      if (TOKEN[c] === 1) return EXT_NAME;
      throw badRequest("invalid chunk extension: empty name");
    case EXT_NAME:
      if (TOKEN[c] === 1) return EXT_NAME;
      if (c === CR) return SIZE_LF;
      if (c === SEMI) return EXT_NAME_START;
      if (c === EQ) return EXT_VAL_START;
      if (ws) return EXT_AFTER_NAME;
      break;
    case EXT_AFTER_NAME: // BWS after a name is only allowed before "=" or ";"
      if (ws) return EXT_AFTER_NAME;
      if (c === EQ) return EXT_VAL_START;
      if (c === SEMI) return EXT_NAME_START;
      break;
    case EXT_VAL_START:
      if (ws) return EXT_VAL_START;
      if (TOKEN[c] === 1) return EXT_VAL;
      if (c === DQUOTE) return EXT_QUOTED;
      throw badRequest("invalid chunk extension: empty value");
    case EXT_VAL:
      if (TOKEN[c] === 1) return EXT_VAL;
      if (c === CR) return SIZE_LF;
      if (c === SEMI) return EXT_NAME_START;
      if (ws) return EXT_BWS;
      break;
    case EXT_QUOTED: // qdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text
      if (c === DQUOTE) return EXT_AFTER_QUOTED;
      if (c === BACKSLASH) return EXT_QUOTED_PAIR;
      if (ws || (c >= 0x21 && c !== 0x7f)) return EXT_QUOTED;
      break;
    case EXT_QUOTED_PAIR:
      if (ws || (c >= 0x21 && c !== 0x7f)) return EXT_QUOTED;
      break;
    case EXT_AFTER_QUOTED:
      if (c === CR) return SIZE_LF;
      if (c === SEMI) return EXT_NAME_START;
      if (ws) return EXT_BWS;
      break;
  }
  throw badRequest("invalid chunk extension");
}

const CRLF = new Uint8Array([CR, LF]);
/** The last chunk and an empty trailer section. */
export const LAST_CHUNK: Uint8Array = new Uint8Array([0x30, CR, LF, CR, LF]);

const encoder = new TextEncoder();

/** One chunk of a chunked body (size line, data, CRLF) in one buffer; empty data gives an empty buffer. */
export function encodeChunk(data: Uint8Array): Uint8Array {
  if (data.length === 0) return data;
  const size = encoder.encode(data.length.toString(16) + "\r\n");
  const out = new Uint8Array(size.length + data.length + 2);
  out.set(size, 0);
  out.set(data, size.length);
  out.set(CRLF, size.length + data.length);
  return out;
}
