/**
 * The response side of one server exchange: the part of Node's `ServerResponse` the proxy uses
 * (writeHead, setHeader, write with backpressure, end, flushHeaders, headersSent, destroy, 'close',
 * and a `Readable.pipe` destination). Framing is chosen when the first bytes go out: the caller's
 * Content-Length, else the whole body's length when `end(body)` is the only write, else chunked
 * (HTTP/1.1) or close-delimited (HTTP/1.0). The head and the first body bytes go in one write.
 */
import { type Duplex, Writable } from "node:stream";
import type { OutgoingHttpHeaders } from "node:http";
import { encodeChunk, LAST_CHUNK } from "./body.ts";
import { statusText } from "./status_text.ts";
import { answered, passed } from "./reclaim.ts";

/** The connection a response writes through. */
export interface ResponseSink {
  /** Writes bytes to the socket; `done` runs when more may be written (now, or at 'drain'). */
  send(bytes: Uint8Array, done: () => void): void;
  /** The whole response has been handed to the socket; `reusable`: the framing was honoured. */
  finished(reusable: boolean, close: boolean): void;
  /** The response was destroyed before it finished: the connection cannot carry on. */
  abort(): void;
}

/** What a response needs to know about the request it answers. */
export interface ResponseFor {
  method: string;
  versionMinor: 0 | 1;
  keepAlive: boolean;
}

const encoder = new TextEncoder();
const INVALID_VALUE = /[\r\n\0]/;
const INVALID_NAME = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;

let dateSecond = 0;
let dateText = "";
/** The Date header, rebuilt at most once a second. */
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** A header's value as set by the handler. */
export type HeaderValue = string | number | readonly string[];

type Framing = "none" | "length" | "chunked" | "close";

/** A response on a connection we serve. */
export class ServerResponse extends Writable {
  statusCode = 200;
  statusMessage = "";
  /** writeHead or a first write happened: the status and headers can no longer change. */
  headersSent = false;
  #fields = new Map<string, [string, string | number | readonly string[]]>();
  #sink: ResponseSink;
  #for: ResponseFor;
  /** The serialised head, until it has gone out with the first bytes. */
  #head: Uint8Array | undefined;
  #headOut = false;
  #framing: Framing = "none";
  #length = -1;
  #written = 0;
  /** Body bytes handed to the connection, whatever the framing (large answers trigger reclaim). */
  #bytes = 0;
  #close = false;
  #overflow = false;
  #wrote = false;
  #taken = false;
  /** end(body) sent the whole answer and told the connection: _final has nothing left to do. */
  #ended = false;
  /** The head is chosen and serialised (by the fast end, or at the first write). */
  #prepared = false;

  /** The connection's socket (as Node's `res.socket`), when the response was made for one. */
  readonly socket: Duplex | null;

  constructor(sink: ResponseSink, forRequest: ResponseFor, socket: Duplex | null = null) {
    super({ highWaterMark: 64 * 1024 });
    this.socket = socket;
    this.#sink = sink;
    this.#for = forRequest;
    if (!forRequest.keepAlive) this.#close = true;
  }

  setHeader(name: string, value: string | number | readonly string[]): this {
    if (this.headersSent) throw new Error("cannot set headers after they are sent");
    checkField(name, value);
    this.#fields.set(name.toLowerCase(), [name, value]);
    return this;
  }

  getHeader(name: string): string | number | readonly string[] | undefined {
    return this.#fields.get(name.toLowerCase())?.[1];
  }

  hasHeader(name: string): boolean {
    return this.#fields.has(name.toLowerCase());
  }

  removeHeader(name: string): void {
    if (this.headersSent) throw new Error("cannot remove headers after they are sent");
    this.#fields.delete(name.toLowerCase());
  }

  /**
   * Sets the status and headers (merged over setHeader's; a flat [name, value, ...] array is
   * taken as raw pairs). They go out with the first body bytes, or at flushHeaders/end.
   */
  writeHead(
    statusCode: number,
    statusMessage?: string | OutgoingHttpHeaders | readonly string[],
    headers?: OutgoingHttpHeaders | readonly string[],
  ): this {
    if (this.headersSent || this.destroyed) return this;
    if (typeof statusMessage === "object") {
      headers = statusMessage;
      statusMessage = undefined;
    }
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) {
      throw new RangeError(`invalid status code ${statusCode}`);
    }
    this.statusCode = statusCode;
    if (statusMessage !== undefined && !INVALID_VALUE.test(statusMessage)) this.statusMessage = statusMessage;
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) this.setHeader(headers[i], headers[i + 1]);
    } else if (headers) {
      // for-in, not Object.entries: no [key, value] array per header on the hot path.
      const h = headers as OutgoingHttpHeaders;
      for (const k in h) {
        const v = h[k];
        if (v !== undefined) this.setHeader(k, v);
      }
    }
    this.headersSent = true;
    return this;
  }

  /** Sends the head now (a watch's answer starts before its first event). */
  flushHeaders(): void {
    if (this.destroyed || this.#headOut) return;
    if (!this.#prepared) this.#prepare(undefined);
    this.#sendHead(new Uint8Array(), () => {});
  }

  override end(chunk?: unknown, encoding?: unknown, cb?: unknown): this {
    if (typeof chunk === "function") return super.end(chunk as () => void);
    // One body known whole, nothing written yet (the usual small answer): head and body in one
    // buffer and one socket write, handed over here rather than through Writable's buffering, and
    // the connection goes on to the next request now, not a tick later.
    if (
      chunk != null && !this.#headOut && !this.#wrote && !this.#taken && !this.destroyed &&
      !this.writableEnded && this.writableLength === 0 &&
      (typeof chunk !== "string" || encoding == null || typeof encoding === "function")
    ) {
      const body = typeof chunk === "string" ? encoder.encode(chunk) : chunk as Uint8Array;
      if (!this.hasHeader("content-length") && !this.hasHeader("transfer-encoding")) {
        this.#fields.set("content-length", ["Content-Length", body.byteLength]);
      }
      this.#prepare(undefined);
      if (this.#framing === "length" || this.#framing === "none") {
        this.#wrote = true;
        this.#ended = true;
        let out = body;
        if (this.#framing === "none") out = new Uint8Array();
        else if (out.byteLength > this.#length) {
          this.#overflow = true;
          out = out.subarray(0, this.#length);
        }
        this.#written = this.#bytes = out.byteLength;
        answered(this.#bytes);
        const complete = this.#framing === "none" || this.#written === this.#length;
        // The next request waits until the socket has taken this answer (a client that pipelines
        // and stops reading holds at most one answer in the socket's buffer).
        this.#sendHead(out, () => this.#sink.finished(complete && !this.#overflow, this.#close));
        return super.end(typeof encoding === "function" ? encoding as () => void : cb as () => void);
      }
    }
    // One body known whole, nothing written yet: frame it by its length, in one write.
    if (!this.#headOut && !this.#wrote && chunk != null && !this.hasHeader("content-length")) {
      const len = typeof chunk === "string"
        ? encoder.encode(chunk).byteLength
        : (chunk as Uint8Array).byteLength;
      if (!this.hasHeader("transfer-encoding")) this.#fields.set("content-length", ["Content-Length", len]);
    }
    if (
      !this.#headOut && !this.#wrote && chunk == null && !this.hasHeader("content-length") && !this.#noBody()
    ) {
      this.#fields.set("content-length", ["Content-Length", 0]);
    }
    return super.end(chunk as string, encoding as BufferEncoding, cb as () => void);
  }

  override _write(chunk: Uint8Array, _enc: string, cb: (err?: Error | null) => void): void {
    this.#out([chunk], cb);
  }

  override _writev(chunks: { chunk: Uint8Array }[], cb: (err?: Error | null) => void): void {
    this.#out(chunks.map((c) => c.chunk), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#taken || this.#ended) return cb();
    const finish = () => {
      cb();
      const complete = this.#framing !== "length" || this.#written === this.#length;
      this.#sink.finished(complete && !this.#overflow, this.#close || this.#framing === "close");
    };
    if (!this.#prepared) this.#prepare(undefined);
    const tail = this.#framing === "chunked" ? LAST_CHUNK : new Uint8Array();
    if (!this.#headOut) this.#sendHead(tail, finish);
    else if (tail.length) this.#sink.send(tail, finish);
    else finish();
  }

  override _destroy(_err: Error | null, cb: (err?: Error | null) => void): void {
    // A response cut short leaves the client no way to find the next message: drop the connection.
    if (!this.writableFinished && !this.#taken) this.#sink.abort();
    // Never an 'error' event: a destroyed response is reported by 'close', as Node's is.
    cb(null);
  }

  /**
   * The connection answers in this response's stead (a protocol error in the request body):
   * what the handler writes from now on is dropped, and 'close' tells it so.
   */
  takeOver(): boolean {
    if (this.#headOut) return false;
    this.#taken = true;
    this.destroy();
    return true;
  }

  #noBody(): boolean {
    const s = this.statusCode;
    return this.#for.method === "HEAD" || s === 204 || s === 304 || s < 200;
  }

  #out(chunks: Uint8Array[], cb: (err?: Error | null) => void): void {
    if (this.#taken) return cb();
    this.#wrote = true;
    if (!this.#prepared) this.#prepare(chunks);
    let body: Uint8Array;
    if (this.#framing === "none") body = new Uint8Array();
    else {
      body = chunks.length === 1 ? chunks[0] : join(chunks);
      if (typeof (body as unknown) === "string") body = encoder.encode(body as unknown as string);
      if (this.#framing === "length") {
        const room = this.#length - this.#written;
        if (body.length > room) {
          this.#overflow = true;
          body = body.subarray(0, room);
        }
        this.#written += body.length;
      } else if (this.#framing === "chunked") body = encodeChunk(body);
    }
    this.#bytes += body.length;
    passed(body.length);
    if (!this.#headOut) return this.#sendHead(body, cb);
    if (body.length === 0) return cb();
    this.#sink.send(body, cb);
  }

  /** Chooses the framing and serialises the head (not sent yet). */
  #prepare(_chunks: Uint8Array[] | undefined): void {
    this.#prepared = true;
    this.headersSent = true;
    const f = this.#fields;
    f.delete("transfer-encoding");
    const conn = f.get("connection");
    if (conn && /\bclose\b/i.test(String(conn[1]))) this.#close = true;
    f.delete("connection");
    f.delete("keep-alive");
    const cl = f.get("content-length");
    if (this.#noBody()) {
      this.#framing = "none";
      // A HEAD answer keeps the Content-Length it would have had; 204 and 304 have none to give.
      if (this.#for.method !== "HEAD" && this.statusCode !== 304) f.delete("content-length");
    } else if (cl !== undefined && /^\d+$/.test(String(cl[1]))) {
      this.#framing = "length";
      this.#length = Number(cl[1]);
    } else {
      f.delete("content-length");
      if (this.#for.versionMinor === 1) {
        this.#framing = "chunked";
        f.set("transfer-encoding", ["Transfer-Encoding", "chunked"]);
      } else {
        this.#framing = "close";
        this.#close = true;
      }
    }
    if (this.#close) f.set("connection", ["Connection", "close"]);
    else if (this.#for.versionMinor === 0) f.set("connection", ["Connection", "keep-alive"]);
    if (!f.has("date")) f.set("date", ["Date", httpDate()]);
    this.#head = this.encodeHead(this.statusCode, f.values());
  }

  /** The head's bytes (HTTP/2 streams hand the fields to their HEADERS frame instead). */
  protected encodeHead(status: number, fields: Iterable<[string, HeaderValue]>): Uint8Array {
    let head = `HTTP/1.1 ${status} ${this.statusMessage || statusText(status)}\r\n`;
    for (const [name, value] of fields) {
      if (Array.isArray(value)) { for (const v of value) head += `${name}: ${v}\r\n`; }
      else head += `${name}: ${value}\r\n`;
    }
    return encoder.encode(head + "\r\n");
  }

  #sendHead(body: Uint8Array, cb: () => void): void {
    const head = this.#head!;
    this.#head = undefined;
    this.#headOut = true;
    this.#sink.send(body.length === 0 ? head : join([head, body]), cb);
  }

  /** The connection closes after this response (set before the head goes out). */
  closeAfter(): void {
    this.#close = true;
  }
}

function checkField(name: string, value: string | number | readonly string[]): void {
  if (!name || INVALID_NAME.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
  if (typeof value === "number") return;
  const bad = typeof value === "string"
    ? INVALID_VALUE.test(value)
    : value.some((v) => INVALID_VALUE.test(String(v)));
  if (bad) throw new TypeError(`invalid value for header ${name}`);
}

function join(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
