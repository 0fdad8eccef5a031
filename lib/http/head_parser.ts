/**
 * Strict, incremental parser of HTTP/1.1 message heads (RFC 9112): request line or status line,
 * then header fields. Feed it bytes as they arrive; only a line split across two chunks is copied.
 * Anything ambiguous for message framing (the stuff of request smuggling) is an error, never a guess.
 */
import { COLON, CR, FIELD_VALUE, HTAB, Interner, latin1, LF, SP, TARGET, TOKEN } from "./chars.ts";
import { badRequest, HttpError } from "./errors.ts";
import { addHeader, type HeaderMap, newHeaderMap, tokens } from "./headers.ts";

/** Bounds on a head; exceeding them is a 414 (start line) or 431 (headers). */
export interface HeadLimits {
  /** Longest request line or status line, in bytes. */
  maxStartLine: number;
  /** Most bytes in the whole head (start line and fields). */
  maxHeaderBytes: number;
  /** Most header fields. */
  maxHeaders: number;
}

export const DEFAULT_HEAD_LIMITS: HeadLimits = {
  maxStartLine: 64 * 1024,
  maxHeaderBytes: 256 * 1024,
  maxHeaders: 500,
};

/**
 * How the body of a message is delimited: none, `length` (Content-Length), `chunked`, or `close`
 * (read until the connection closes; responses only).
 */
export type BodyKind = "none" | "length" | "chunked" | "close";

interface HeadCommon {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: 0 | 1;
  httpVersion: "1.0" | "1.1";
  /** Lower-cased names, duplicates joined as Node does (see headers.ts). */
  headers: HeaderMap;
  /** Names as sent and values, alternating, in arrival order (as Node's `rawHeaders`). */
  rawHeaders: string[];
  body: BodyKind;
  /** The body length when `body` is "length", else -1. */
  contentLength: number;
  /** The connection may carry another message after this one. */
  keepAlive: boolean;
}

/** A parsed request head. */
export interface RequestHead extends HeadCommon {
  method: string;
  url: string;
  /** `Connection: upgrade` with an `Upgrade` header: the connection is to be handed over. */
  upgrade: boolean;
  /** `Expect: 100-continue` (HTTP/1.1). */
  expectContinue: boolean;
}

/** A parsed response head. */
export interface ResponseHead extends HeadCommon {
  statusCode: number;
  statusMessage: string;
  /** A 1xx answer: another head follows on the same connection (101: the protocol switched). */
  informational: boolean;
}

/** `feed` returns this when the head is not complete yet (all bytes given were consumed). */
export const NEED_MORE = -1;

abstract class HeadParser<H extends RequestHead | ResponseHead> {
  protected limits: HeadLimits;
  /** Bytes of a line split across chunks. */
  private pending: Uint8Array | null = null;
  /** Bytes of this head consumed so far (whole lines). */
  private bytes = 0;
  private sawStartLine = false;
  protected headers: HeaderMap = newHeaderMap();
  protected rawHeaders: string[] = [];
  protected contentLength = -1;
  protected transferEncoding: string | undefined;
  protected hostCount = 0;
  protected versionMinor: 0 | 1 = 1;
  /** The last complete head, set when `feed` returns an offset. */
  head: H | undefined;

  constructor(limits: Partial<HeadLimits> = {}) {
    this.limits = { ...DEFAULT_HEAD_LIMITS, ...limits };
  }

  /** Whether some bytes of a head have arrived (a request has started). */
  get started(): boolean {
    return this.sawStartLine || this.pending !== null;
  }

  /** Forgets any partial head. */
  reset(): void {
    this.pending = null;
    this.bytes = 0;
    this.sawStartLine = false;
    this.headers = newHeaderMap();
    this.rawHeaders = [];
    this.contentLength = -1;
    this.transferEncoding = undefined;
    this.hostCount = 0;
    this.versionMinor = 1;
  }

  /**
   * Consumes bytes from `buf[start..]`. Returns the offset just past the head when it is complete
   * (then `head` holds it and the parser is ready for the next one), NEED_MORE when every byte was
   * consumed and the head goes on, or an HttpError (the connection cannot be used any more).
   * Never throws.
   */
  feed(buf: Uint8Array, start = 0): number | HttpError {
    try {
      return this.run(buf, start);
    } catch (e) {
      this.reset();
      return e instanceof HttpError ? e : badRequest(`malformed message: ${(e as Error).message}`);
    }
  }

  private run(buf: Uint8Array, start: number): number {
    let pos = start;
    const len = buf.length;
    while (pos < len || this.pending) {
      const lf = buf.indexOf(LF, pos);
      if (lf < 0) {
        const rest = buf.subarray(pos);
        this.pending = this.pending ? concat(this.pending, rest) : rest.slice();
        this.checkLength(this.pending.length);
        return NEED_MORE;
      }
      let line = buf, s = pos;
      if (this.pending) {
        line = concat(this.pending, buf.subarray(pos, lf + 1));
        s = 0;
        this.pending = null;
      }
      const lfAt = line === buf ? lf : line.length - 1;
      if (lfAt === s || line[lfAt - 1] !== CR) throw badRequest("line ending without CR (bare LF)");
      const end = lfAt - 1;
      this.checkLength(lfAt + 1 - s);
      this.bytes += lfAt + 1 - s;
      pos = lf + 1;
      if (!this.sawStartLine) {
        // A server ignores empty lines before a request line (RFC 9112 §2.2).
        if (end === s) continue;
        this.sawStartLine = true;
        this.startLine(line, s, end);
      } else if (end === s) {
        this.head = this.finish();
        this.reset();
        return pos;
      } else {
        this.field(line, s, end);
      }
    }
    return NEED_MORE;
  }

  private checkLength(lineBytes: number): void {
    if (!this.sawStartLine && lineBytes > this.limits.maxStartLine + 2) throw this.startLineTooLong();
    if (this.bytes + lineBytes > this.limits.maxHeaderBytes) {
      throw new HttpError(431, `header section larger than ${this.limits.maxHeaderBytes} bytes`);
    }
  }

  protected abstract startLineTooLong(): HttpError;
  protected abstract startLine(buf: Uint8Array, s: number, e: number): void;
  protected abstract finish(): H;

  private field(buf: Uint8Array, s: number, e: number): void {
    if (this.rawHeaders.length >= this.limits.maxHeaders * 2) {
      throw new HttpError(431, `more than ${this.limits.maxHeaders} header fields`);
    }
    const [raw, name, value] = parseField(buf, s, e);
    this.rawHeaders.push(raw, value);
    switch (name) {
      case "content-length": {
        const n = parseLength(value);
        if (this.contentLength >= 0 && n !== this.contentLength) {
          throw badRequest("differing Content-Length values");
        }
        this.contentLength = n;
        break;
      }
      case "transfer-encoding":
        this.transferEncoding = this.transferEncoding === undefined
          ? value
          : `${this.transferEncoding},${value}`;
        break;
      case "host":
        this.hostCount++;
        break;
    }
    addHeader(this.headers, name, value);
  }

  /** "HTTP/1.x" at buf[s..s+8): 1.0, or 1.1 for any x from 1 up. */
  protected version(buf: Uint8Array, s: number): void {
    if (
      buf[s] !== 0x48 || buf[s + 1] !== 0x54 || buf[s + 2] !== 0x54 || buf[s + 3] !== 0x50 ||
      buf[s + 4] !== 0x2f || buf[s + 6] !== 0x2e
    ) throw badRequest("malformed HTTP version");
    const major = buf[s + 5], minor = buf[s + 7];
    if (major < 0x30 || major > 0x39 || minor < 0x30 || minor > 0x39) {
      throw badRequest("malformed HTTP version");
    }
    if (major !== 0x31) throw new HttpError(505, "HTTP version not supported");
    // A higher minor version of HTTP/1 is handled as the highest we speak (RFC 9110 §2.5).
    this.versionMinor = minor === 0x30 ? 0 : 1;
  }

  /** Framing by Transfer-Encoding: chunked must be the only coding (we decode no other). */
  protected chunkedOnly(): void {
    if (this.contentLength >= 0) throw badRequest("both Content-Length and Transfer-Encoding");
    const codings = tokens(this.transferEncoding);
    if (codings.length === 1 && codings[0] === "chunked") return;
    if (
      codings.length > 1 && codings[codings.length - 1] === "chunked" &&
      codings.indexOf("chunked") === codings.length - 1
    ) {
      throw new HttpError(501, `transfer coding not implemented: ${this.transferEncoding}`);
    }
    throw badRequest(`Transfer-Encoding is not chunked: ${this.transferEncoding}`);
  }

  protected common(body: BodyKind, keepAlive: boolean): HeadCommon {
    const minor = this.versionMinor;
    return {
      versionMinor: minor,
      httpVersion: minor === 1 ? "1.1" : "1.0",
      headers: this.headers,
      rawHeaders: this.rawHeaders,
      body,
      contentLength: body === "length" ? this.contentLength : -1,
      keepAlive,
    };
  }

  protected keepAlive(): boolean {
    const conn = this.headers.connection;
    if (conn === undefined) return this.versionMinor === 1;
    const t = tokens(conn);
    return this.versionMinor === 1 ? !t.includes("close") : t.includes("keep-alive");
  }
}

/**
 * One header (or trailer) field line `buf[s..e)` without its CRLF: a token name, a colon right
 * after it, and a value of visible characters, SP and HTAB (leading and trailing OWS dropped).
 * Returns the name as sent, the name lower-cased, and the value. Throws an HttpError.
 */
export function parseField(buf: Uint8Array, s: number, e: number): [string, string, string] {
  const c0 = buf[s];
  if (c0 === SP || c0 === HTAB) throw badRequest("obsolete line folding in a header field");
  let colon = -1;
  for (let i = s; i < e; i++) {
    const c = buf[i];
    if (c === COLON) {
      colon = i;
      break;
    }
    if (TOKEN[c] === 0) throw badRequest("invalid character in a header name");
  }
  if (colon < 0) throw badRequest("header field without a colon");
  if (colon === s) throw badRequest("empty header name");
  let vs = colon + 1, ve = e;
  while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
  while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
  const name = NAMES.get(buf, s, colon);
  // Credentials are never kept in the shared table of recurring values.
  const secret = name.lower === "authorization" || name.lower === "proxy-authorization" ||
    name.lower === "cookie";
  // A value seen before was validated then.
  const known = secret ? undefined : VALUES.find(buf, vs, ve);
  if (known) return [name.text, name.lower, known.text];
  let ascii = true;
  for (let i = vs; i < ve; i++) {
    const c = buf[i];
    if (FIELD_VALUE[c] === 0) throw badRequest("invalid character in a header value");
    if (c > 0x7f) ascii = false;
  }
  const value = secret ? latin1(buf, vs, ve, ascii) : VALUES.add(buf, vs, ve, ascii).text;
  return [name.text, name.lower, value];
}

/** Header names and short recurring values (Accept, Host, User-Agent...) seen on this process. */
const NAMES = new Interner(512, 64);
const VALUES = new Interner(1024, 160);
const METHODS = new Interner(32, 16);

/**
 * 1*DIGIT with at most 15 significant digits (a safe integer): no sign, no hex, no spaces, no
 * list. Leading zeros are allowed in any number (RFC 9110 §8.6 puts no bound on them).
 */
function parseLength(v: string): number {
  let z = 0;
  while (z < v.length - 1 && v.charCodeAt(z) === 0x30) z++;
  if (v.length === 0 || v.length - z > 15) throw badRequest(`invalid Content-Length: ${JSON.stringify(v)}`);
  let n = 0;
  for (let i = z; i < v.length; i++) {
    const c = v.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) throw badRequest(`invalid Content-Length: ${JSON.stringify(v)}`);
    n = n * 10 + c;
  }
  return n;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Parses request heads (a server's side of the wire). */
export class RequestHeadParser extends HeadParser<RequestHead> {
  private method = "";
  private url = "";

  protected startLineTooLong(): HttpError {
    return new HttpError(414, `request line longer than ${this.limits.maxStartLine} bytes`);
  }

  protected startLine(buf: Uint8Array, s: number, e: number): void {
    let i = s;
    while (i < e && TOKEN[buf[i]] === 1) i++;
    if (i === s || i >= e || buf[i] !== SP) throw badRequest("malformed request line");
    const m = i;
    const t = ++i;
    while (i < e && TARGET[buf[i]] === 1) i++;
    if (i === t || i >= e || buf[i] !== SP) throw badRequest("malformed request line");
    if (e - (i + 1) !== 8) throw badRequest("malformed request line");
    this.version(buf, i + 1);
    this.method = METHODS.get(buf, s, m).text;
    this.url = latin1(buf, t, i);
  }

  protected finish(): RequestHead {
    let body: BodyKind = "none";
    if (this.transferEncoding !== undefined) {
      if (this.versionMinor === 0) throw badRequest("Transfer-Encoding in an HTTP/1.0 request");
      this.chunkedOnly();
      body = "chunked";
    } else if (this.contentLength > 0) body = "length";
    if (this.hostCount > 1) throw badRequest("more than one Host header");
    if (this.hostCount === 0 && this.versionMinor === 1) throw badRequest("missing Host header");
    const h = this.headers;
    let expectContinue = false;
    if (h.expect !== undefined && this.versionMinor === 1) {
      if (String(h.expect).trim().toLowerCase() !== "100-continue") {
        throw new HttpError(417, `unsupported expectation: ${h.expect}`);
      }
      expectContinue = true;
    }
    const upgrade = h.upgrade !== undefined && tokens(h.connection).includes("upgrade");
    const minor = this.versionMinor;
    return {
      versionMinor: minor,
      httpVersion: minor === 1 ? "1.1" : "1.0",
      headers: h,
      rawHeaders: this.rawHeaders,
      body,
      contentLength: body === "length" ? this.contentLength : -1,
      keepAlive: this.keepAlive(),
      method: this.method,
      url: this.url,
      upgrade,
      expectContinue,
    };
  }
}

/** Parses response heads (a client's side of the wire). Call `expect()` before each response. */
export class ResponseHeadParser extends HeadParser<ResponseHead> {
  private statusCode = 0;
  private statusMessage = "";
  private noBody = false;

  /** The method of the request the next response answers (HEAD answers carry no body). */
  expect(method: string): void {
    this.noBody = method === "HEAD";
  }

  protected startLineTooLong(): HttpError {
    return badRequest(`status line longer than ${this.limits.maxStartLine} bytes`);
  }

  protected startLine(buf: Uint8Array, s: number, e: number): void {
    if (e - s < 12 || (e - s > 12 && buf[s + 12] !== SP) || buf[s + 8] !== SP) {
      throw badRequest("malformed status line");
    }
    this.version(buf, s);
    let code = 0;
    for (let i = s + 9; i < s + 12; i++) {
      const d = buf[i] - 0x30;
      if (d < 0 || d > 9) throw badRequest("malformed status code");
      code = code * 10 + d;
    }
    if (code < 100) throw badRequest("malformed status code");
    let ascii = true;
    for (let i = s + 13; i < e; i++) {
      const c = buf[i];
      if (FIELD_VALUE[c] === 0) throw badRequest("invalid character in the reason phrase");
      if (c > 0x7f) ascii = false;
    }
    this.statusCode = code;
    this.statusMessage = e > s + 13 ? latin1(buf, s + 13, e, ascii) : "";
  }

  protected finish(): ResponseHead {
    const code = this.statusCode;
    const informational = code < 200;
    let body: BodyKind;
    if (informational || code === 204 || code === 304 || this.noBody) {
      body = "none";
    } else if (this.transferEncoding !== undefined) {
      if (this.contentLength >= 0) throw badRequest("both Content-Length and Transfer-Encoding");
      const codings = tokens(this.transferEncoding);
      // A final coding other than chunked: the body runs to the close (RFC 9112 §6.3).
      if (codings[codings.length - 1] !== "chunked") body = "close";
      else {
        this.chunkedOnly();
        body = "chunked";
      }
    } else if (this.contentLength >= 0) body = this.contentLength > 0 ? "length" : "none";
    else body = "close";
    this.noBody = false;
    return {
      ...this.common(body, body !== "close" && this.keepAlive()),
      statusCode: code,
      statusMessage: this.statusMessage,
      informational,
    };
  }
}
