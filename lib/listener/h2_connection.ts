/**
 * HTTP/2 for the node's clients (RFC 9113): one TLS connection that negotiated `h2` by ALPN,
 * carrying many exchanges as streams. Each stream reaches the request handler as the same
 * ServerRequest / ServerResponse pair an HTTP/1.1 exchange does (the response's head goes out as a
 * HEADERS frame, its body as DATA), so the router, relay, offline serving and watches cannot tell.
 * The frame and HPACK codec is the one the upstream client uses (lib/http2).
 *
 * Bounds, whatever the peer does:
 * - header blocks: compressed bytes and decoded list by `maxHeaderListSize`, at most
 *   MAX_CONTINUATIONS frames, whole within `headerTimeoutMs` (CONTINUATION flood: GOAWAY + close);
 * - streams: `maxConcurrentStreams` announced and enforced (REFUSED_STREAM beyond);
 * - resets: streams the client resets or we refuse spend a token bucket; an empty bucket is
 *   rapid reset (CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM and close;
 * - request bodies: a stream's window (64 KiB) is granted back only as the handler reads;
 * - sending: DATA goes out only within the client's windows and while the socket holds less than
 *   SOCKET_HIGH bytes; a response's write completes (its 'drain') only when its bytes went to the
 *   socket, so a stream the client never grants window to backs the relay up as a slow HTTP/1.1
 *   reader does and the relay's slow-reader bound cuts it. Control frames (SETTINGS/PING acks) past
 *   MAX_UNSENT bytes unsent mean a peer that floods without reading: the connection is dropped.
 */
import type { Duplex } from "node:stream";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  encodeFrame,
  encodeGoaway,
  encodePing,
  encodeRst,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  H2Error,
  MAX_WINDOW,
  parseGoaway,
  parseRst,
  parseSettings,
  parseWindowUpdate,
  Setting,
  unpad,
} from "../http2/frame.ts";
import { type HeaderField, HpackDecoder, HpackEncoder, HpackError } from "../http2/hpack.ts";
import { ServerRequest } from "../http/request.ts";
import { type HeaderValue, type ResponseSink, ServerResponse } from "../http/response.ts";
import { addHeader, newHeaderMap } from "../http/headers.ts";
import type { RequestHead } from "../http/head_parser.ts";
import type { ServedConnection } from "../http/server_connection.ts";
import type { BodyBudget } from "../http/body_budget.ts";

export interface H2ServeOptions {
  /** The preface, SETTINGS and each header block must arrive within this. */
  headerTimeoutMs: number;
  /** A connection without streams is closed (GOAWAY) after this. */
  idleTimeoutMs: number;
  /** Larger request bodies are answered 413. */
  maxRequestBodyBytes: number;
  /** A request body must arrive whole within this time of its head (0: none). */
  bodyTimeoutMs?: number;
  /** Announced SETTINGS_MAX_CONCURRENT_STREAMS (Go: 250). */
  maxConcurrentStreams?: number;
  /** Bound on one request's header block, compressed and decoded (as the HTTP/1.1 head bound). */
  maxHeaderListSize?: number;
  /** Resets (by the client, or refusals) a connection may spend at once, and refilled per second. */
  resetBurst?: number;
  resetsPerSecond?: number;
  onRequest(req: ServerRequest, res: ServerResponse): void;
  errorBody(status: number, message: string): { contentType: string; body: string };
  onError?(message: string, status: number): void;
  /** A request with an Authorization header got a 2xx/3xx answer: its token is known upstream. */
  onProven?(): void;
  /** The process-wide budget for request-body bytes held in memory (shared with HTTP/1.1). */
  bodyBudget?: BodyBudget;
}

/** More CONTINUATION frames than this for one header block is a flood. */
export const MAX_CONTINUATIONS = 64;
/** DATA is written only while the socket holds less than this. */
const SOCKET_HIGH = 256 * 1024;
/** Unsent bytes beyond this (the peer floods control frames and never reads): the connection ends. */
const MAX_UNSENT = 2 * 1024 * 1024;
/** Window per stream for request bodies (the HTTP/2 default; granted back as the handler reads). */
const STREAM_WINDOW = DEFAULT_WINDOW;
/** Window for the whole connection. */
const CONNECTION_WINDOW = 4 * 1024 * 1024;
/** A GOAWAY's last chance to reach the peer before the socket is destroyed. */
const CLOSE_GRACE_MS = 1000;
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);
const NAME_OK = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const VALUE_OK = /^[^\r\n\0]*$/;

/** The response of one stream: the head goes to the stream's HEADERS frame, not into bytes. */
class H2Response extends ServerResponse {
  constructor(private stream: H2Stream, method: string) {
    // HTTP/1.0 framing rules: a body of unknown length is passed through as is (no chunking).
    super(stream, { method, versionMinor: 0, keepAlive: true }, null);
  }

  protected override encodeHead(status: number, fields: Iterable<[string, HeaderValue]>): Uint8Array {
    const out: HeaderField[] = [[":status", String(status)]];
    for (const [name, value] of fields) {
      const n = name.toLowerCase();
      if (CONNECTION_SPECIFIC.has(n)) continue;
      if (Array.isArray(value)) { for (const v of value) out.push([n, String(v)]); }
      else out.push([n, String(value)]);
    }
    this.stream.head = out;
    return new Uint8Array(0);
  }
}

class H2Stream implements ResponseSink {
  head?: HeaderField[];
  headSent = false;
  req?: ServerRequest;
  res?: H2Response;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  sendWindow: number;
  /** Request-body window still open to the client, and bytes read by the handler not yet granted. */
  recvAvail = STREAM_WINDOW;
  owed = 0;
  /** Body bytes above the reader's high-water mark: granted back once it reads. */
  pendingGrant = 0;
  bodyBytes = 0;
  /** Request-body bytes this stream holds in the shared budget. */
  held = 0;
  expectLength = -1;
  queue: Uint8Array[] = [];
  queued = 0;
  /** The response's write waiting for its bytes to reach the socket. */
  done?: () => void;
  endAfterQueue = false;
  authorized = false;
  bodyTimer?: ReturnType<typeof setTimeout>;

  constructor(readonly id: number, readonly conn: H2ServerConnection, sendWindow: number) {
    this.sendWindow = sendWindow;
  }

  send(bytes: Uint8Array, done: () => void): void {
    if (this.closed) return done();
    if (!this.headSent) this.conn.sendHeaders(this, false);
    if (bytes.byteLength === 0) return done();
    this.queue.push(bytes);
    this.queued += bytes.byteLength;
    this.done = done;
    this.conn.pump();
  }

  finished(reusable: boolean): void {
    if (this.closed) return;
    if (!reusable) return this.conn.reset(this, ErrorCode.INTERNAL_ERROR);
    if (this.authorized) {
      const s = this.res?.statusCode ?? 0;
      if (s >= 200 && s < 400) this.conn.proven();
    }
    if (!this.headSent) return this.conn.sendHeaders(this, true);
    this.endAfterQueue = true;
    this.conn.pump();
  }

  abort(): void {
    if (!this.closed) this.conn.reset(this, ErrorCode.INTERNAL_ERROR);
  }
}

class RequestBody {
  constructor(private stream: H2Stream) {}
  pull(): void {
    this.stream.conn.grant(this.stream);
  }
}

export class H2ServerConnection implements ServedConnection {
  #streams = new Map<number, H2Stream>();
  #reader: FrameReader;
  #decoder: HpackDecoder;
  #encoder = new HpackEncoder();
  #opts: Required<Omit<H2ServeOptions, "onError" | "onProven" | "bodyBudget">> & H2ServeOptions;
  #preface = 0;
  #gotSettings = false;
  #lastStream = 0;
  #goingAway = false;
  #closed = false;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #connSendWindow = DEFAULT_WINDOW;
  #connRecvAvail = CONNECTION_WINDOW;
  #block?: { stream: number; parts: Uint8Array[]; size: number; frames: number; endStream: boolean };
  #timer?: ReturnType<typeof setTimeout>;
  #tokens: number;
  #tokensAt = performance.now();
  #proven = false;
  #rr = 0;

  constructor(readonly socket: Duplex, opts: H2ServeOptions) {
    this.#opts = {
      bodyTimeoutMs: 0,
      maxConcurrentStreams: 250,
      maxHeaderListSize: 256 * 1024,
      resetBurst: 200,
      resetsPerSecond: 20,
      ...opts,
    };
    this.#tokens = this.#opts.resetBurst;
    this.#decoder = new HpackDecoder({ maxHeaderListSize: this.#opts.maxHeaderListSize });
    this.#reader = new FrameReader(DEFAULT_MAX_FRAME_SIZE, (f) => this.#onFrame(f));
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("drain", () => this.pump());
    socket.on("error", () => {});
    socket.once("close", () => this.#onClose());
    socket.once("end", () => this.#close());
    this.#write(encodeSettings([
      [Setting.MAX_CONCURRENT_STREAMS, this.#opts.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
      [Setting.MAX_HEADER_LIST_SIZE, this.#opts.maxHeaderListSize],
    ]));
    this.#write(encodeWindowUpdate(0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.#arm(this.#opts.headerTimeoutMs, "no HTTP/2 preface and SETTINGS in time");
  }

  busy(): boolean {
    return this.#streams.size > 0;
  }

  /** Open streams (for tests and metrics). */
  get streams(): number {
    return this.#streams.size;
  }

  // --- reading ---

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    try {
      if (this.#preface < CLIENT_PREFACE.byteLength) {
        const take = Math.min(CLIENT_PREFACE.byteLength - this.#preface, chunk.byteLength);
        for (let i = 0; i < take; i++) {
          if (chunk[i] !== CLIENT_PREFACE[this.#preface + i]) {
            throw new H2Error(ErrorCode.PROTOCOL_ERROR, "not the HTTP/2 client preface");
          }
        }
        this.#preface += take;
        chunk = chunk.subarray(take);
      }
      if (chunk.byteLength) this.#reader.feed(chunk);
    } catch (e) {
      this.#fail(e);
    }
  }

  #fail(e: unknown): void {
    if (e instanceof H2Error && e.stream === 0) {
      // ENHANCE_YOUR_CALM: an attack bounded (rapid reset, CONTINUATION flood), worth a warning.
      this.#opts.onError?.(`HTTP/2: ${e.message}`, e.h2code === ErrorCode.ENHANCE_YOUR_CALM ? 429 : 400);
      this.goaway(e.h2code, e.message);
    } else if (e instanceof HpackError) {
      this.#opts.onError?.(`HTTP/2: ${e.message}`, 400);
      this.goaway(ErrorCode.COMPRESSION_ERROR, e.message);
    } else {
      this.#opts.onError?.(`HTTP/2: ${e instanceof Error ? e.message : String(e)}`, 500);
      this.goaway(ErrorCode.INTERNAL_ERROR, "internal error");
    }
  }

  #onFrame(f: Frame): void {
    if (this.#closed) return;
    if (!this.#gotSettings) {
      if (f.type !== FrameType.SETTINGS || f.flags & Flag.ACK) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "the first frame was not SETTINGS");
      }
      this.#gotSettings = true;
      this.#idle();
    }
    if (this.#block && f.type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "a frame inside a header block");
    }
    switch (f.type) {
      case FrameType.HEADERS:
        return this.#onHeaders(f);
      case FrameType.CONTINUATION:
        return this.#onContinuation(f);
      case FrameType.DATA:
        return this.#onDataFrame(f);
      case FrameType.SETTINGS:
        return this.#onSettings(f);
      case FrameType.PING:
        if (f.stream !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (f.payload.byteLength !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING length not 8");
        if (!(f.flags & Flag.ACK)) this.#write(encodePing(f.payload, true));
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(f);
      case FrameType.RST_STREAM:
        return this.#onRst(f);
      case FrameType.GOAWAY:
        parseGoaway(f);
        this.#goingAway = true;
        if (this.#streams.size === 0) this.#end();
        return;
      case FrameType.PRIORITY:
        if (f.stream === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (f.payload.byteLength !== 5) this.#rstId(f.stream, ErrorCode.FRAME_SIZE_ERROR);
        return;
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      default:
        return; // unknown frame types are ignored (section 5.5)
    }
  }

  #onHeaders(f: Frame): void {
    const id = f.stream;
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    const fragment = unpad(f);
    const endStream = (f.flags & Flag.END_STREAM) !== 0;
    this.#block = { stream: id, parts: [fragment], size: fragment.byteLength, frames: 1, endStream };
    this.#checkBlock();
    if (f.flags & Flag.END_HEADERS) this.#blockDone();
    else this.#arm(this.#opts.headerTimeoutMs, "header block not finished in time");
  }

  #onContinuation(f: Frame): void {
    const b = this.#block;
    if (!b || b.stream !== f.stream) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place");
    b.parts.push(f.payload);
    b.size += f.payload.byteLength;
    b.frames++;
    this.#checkBlock();
    if (f.flags & Flag.END_HEADERS) this.#blockDone();
  }

  #checkBlock(): void {
    const b = this.#block!;
    if (b.frames > MAX_CONTINUATIONS + 1 || b.size > this.#opts.maxHeaderListSize) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, "header block too large (CONTINUATION flood)");
    }
  }

  #blockDone(): void {
    const b = this.#block!;
    this.#block = undefined;
    this.#idle();
    const block = b.parts.length === 1 ? b.parts[0] : concat(b.parts, b.size);
    // Decoded even for a stream we refuse: the HPACK table must stay in step.
    const fields = this.#decoder.decode(block);
    const open = this.#streams.get(b.stream);
    if (open) {
      // Trailers: must end the stream; their fields are dropped (as the HTTP/1.1 server does).
      if (!b.endStream || open.remoteEnded) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS mid-stream");
      return this.#remoteEnd(open);
    }
    if (b.stream % 2 === 0 || b.stream <= this.#lastStream) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS on closed or server stream ${b.stream}`);
    }
    this.#lastStream = b.stream;
    if (this.#goingAway) return;
    if (this.#streams.size >= this.#opts.maxConcurrentStreams) {
      this.#spend("refused streams");
      return this.#rstId(b.stream, ErrorCode.REFUSED_STREAM);
    }
    this.#open(b.stream, fields, b.endStream);
  }

  #open(id: number, fields: HeaderField[], endStream: boolean): void {
    const stream = new H2Stream(id, this, this.#peerInitialWindow);
    let method = "", path = "", scheme = "", authority = "", protocol = "";
    const headers = newHeaderMap();
    const raw: string[] = [];
    const cookies: string[] = [];
    let regular = false;
    let bad = "";
    for (const [name, value] of fields) {
      if (name.startsWith(":")) {
        if (regular) bad ||= "pseudo-header after a regular one";
        if (name === ":method" && !method) method = value;
        else if (name === ":path" && !path) path = value;
        else if (name === ":scheme" && !scheme) scheme = value;
        else if (name === ":authority" && !authority) authority = value;
        else if (name === ":protocol") protocol = value;
        else bad ||= `pseudo-header ${name} not allowed or repeated`;
        continue;
      }
      regular = true;
      if (!NAME_OK.test(name)) bad ||= `header name ${JSON.stringify(name)} not lower-case or invalid`;
      else if (!VALUE_OK.test(value)) bad ||= `header ${name} has an invalid value`;
      else if (CONNECTION_SPECIFIC.has(name)) bad ||= `connection-specific header ${name}`;
      else if (name === "te" && value !== "trailers") bad ||= "te other than trailers";
      else if (name === "cookie") cookies.push(value);
      else {
        addHeader(headers, name, value);
        raw.push(name, value);
      }
    }
    if (cookies.length) {
      addHeader(headers, "cookie", cookies.join("; "));
      raw.push("cookie", cookies.join("; "));
    }
    if (protocol) bad ||= "extended CONNECT is not supported (use HTTP/1.1 to upgrade)";
    if (!bad && method !== "CONNECT" && (!method || !path || !scheme)) {
      bad = "missing :method, :path or :scheme";
    }
    if (bad) {
      this.#opts.onError?.(`HTTP/2 stream refused: ${bad}`, 400);
      return this.#rstId(id, ErrorCode.PROTOCOL_ERROR);
    }
    if (authority && headers.host === undefined) {
      headers.host = authority;
      raw.push("host", authority);
    }
    const cl = headers["content-length"];
    if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) {
        this.#opts.onError?.("HTTP/2 stream refused: invalid content-length", 400);
        return this.#rstId(id, ErrorCode.PROTOCOL_ERROR);
      }
      stream.expectLength = Number(cl);
    }
    stream.authorized = headers.authorization !== undefined;
    const head: RequestHead = {
      method,
      url: path,
      upgrade: false,
      expectContinue: false,
      httpVersion: "1.1",
      versionMinor: 1,
      headers,
      rawHeaders: raw,
      body: endStream ? "none" : cl !== undefined ? "length" : "chunked",
      contentLength: cl !== undefined ? Number(cl) : -1,
      keepAlive: true,
    } as RequestHead;
    const req = new ServerRequest(head, this.socket, new RequestBody(stream));
    (req as { httpVersion: string }).httpVersion = "2.0";
    (req as { httpVersionMajor: number }).httpVersionMajor = 2;
    (req as { httpVersionMinor: number }).httpVersionMinor = 0;
    stream.req = req;
    stream.res = new H2Response(stream, method);
    stream.res.once("close", () => {
      // The handler dropped the response: nothing more will come for this stream.
      if (!stream.closed && !stream.res!.writableFinished) this.reset(stream, ErrorCode.CANCEL);
    });
    this.#streams.set(id, stream);
    this.#idle();
    if (endStream) {
      stream.remoteEnded = true;
      req.finishBody();
    } else if (this.#opts.bodyTimeoutMs > 0) {
      stream.bodyTimer = setTimeout(() => {
        if (stream.closed || stream.remoteEnded) return;
        this.#opts.onError?.("HTTP/2 request body not received in time", 408);
        this.#answerOrReset(stream, 408, "request body not received in time");
      }, this.#opts.bodyTimeoutMs);
    }
    if (method === "CONNECT") return this.#answer(stream, 405, "CONNECT is not supported over HTTP/2");
    if (stream.expectLength > this.#opts.maxRequestBodyBytes) {
      return this.#answer(stream, 413, `request body larger than ${this.#opts.maxRequestBodyBytes} bytes`);
    }
    try {
      this.#opts.onRequest(req, stream.res);
    } catch (e) {
      this.#opts.onError?.(e instanceof Error ? e.message : String(e), 500);
      this.#answerOrReset(stream, 500, "internal error");
    }
  }

  #answer(stream: H2Stream, status: number, message: string): void {
    const { contentType, body } = this.#opts.errorBody(status, message);
    const res = stream.res!;
    res.writeHead(status, { "content-type": contentType, "cache-control": "no-cache, private" });
    res.end(body);
  }

  #answerOrReset(stream: H2Stream, status: number, message: string): void {
    if (stream.closed) return;
    if (!stream.res!.headersSent && !stream.headSent) return this.#answer(stream, status, message);
    this.reset(stream, ErrorCode.CANCEL);
  }

  #onDataFrame(f: Frame): void {
    const n = f.payload.byteLength;
    if (f.stream === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (n > this.#connRecvAvail) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    this.#connRecvAvail -= n;
    // The connection's window comes back at once: each stream's own window bounds what it holds.
    if (this.#connRecvAvail < CONNECTION_WINDOW / 2) {
      this.#write(encodeWindowUpdate(0, CONNECTION_WINDOW - this.#connRecvAvail));
      this.#connRecvAvail = CONNECTION_WINDOW;
    }
    const stream = this.#streams.get(f.stream);
    if (!stream || stream.remoteEnded) {
      if (f.stream > this.#lastStream) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      return this.#rstId(f.stream, ErrorCode.STREAM_CLOSED);
    }
    if (n > stream.recvAvail) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window");
    }
    stream.recvAvail -= n;
    const data = unpad(f);
    // Padding is never handed to the reader: its window comes back now.
    stream.owed += n - data.byteLength;
    stream.bodyBytes += data.byteLength;
    if (stream.bodyBytes > this.#opts.maxRequestBodyBytes) {
      stream.req!.abort();
      return this.#answerOrReset(
        stream,
        413,
        `request body larger than ${this.#opts.maxRequestBodyBytes} bytes`,
      );
    }
    if (stream.expectLength >= 0 && stream.bodyBytes > stream.expectLength) {
      stream.req!.abort();
      return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    }
    if (data.byteLength) {
      // Below the reader's high-water mark the window comes back now; else when it reads (pull).
      if (stream.req!.push(data.slice())) stream.owed += data.byteLength;
      else stream.pendingGrant += data.byteLength;
      if (!this.#account(stream)) {
        this.#opts.onError?.("request bodies in flight exceed the memory budget", 503);
        stream.req!.abort();
        return this.#answerOrReset(
          stream,
          503,
          "the request bodies in flight exceed this server's memory budget: retry later",
        );
      }
    }
    if (f.flags & Flag.END_STREAM) this.#remoteEnd(stream);
    else this.grant(stream);
  }

  /** Gives a stream's window back for what its reader has taken. */
  grant(stream: H2Stream): void {
    this.#account(stream);
    if (stream.closed || stream.remoteEnded) return;
    if (stream.pendingGrant && stream.req!.readableLength < stream.req!.readableHighWaterMark) {
      stream.owed += stream.pendingGrant;
      stream.pendingGrant = 0;
    }
    if (stream.owed >= STREAM_WINDOW / 4 || (stream.owed > 0 && stream.recvAvail === 0)) {
      this.#write(encodeWindowUpdate(stream.id, stream.owed));
      stream.recvAvail += stream.owed;
      stream.owed = 0;
    }
  }

  /** Brings the stream's share of the body budget up to what its request holds; false: over. */
  #account(stream: H2Stream): boolean {
    const budget = this.#opts.bodyBudget;
    if (!budget) return true;
    const req = stream.req!;
    const now = stream.closed || req.destroyed ? 0 : req.readableLength;
    const ok = budget.adjust(now - stream.held);
    stream.held = now;
    return ok;
  }

  #remoteEnd(stream: H2Stream): void {
    stream.remoteEnded = true;
    clearTimeout(stream.bodyTimer);
    if (stream.expectLength >= 0 && stream.bodyBytes !== stream.expectLength) {
      stream.req!.abort();
      return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    }
    if (!stream.req!.complete) stream.req!.finishBody();
    if (stream.localEnded) this.#closeStream(stream, false);
  }

  #onSettings(f: Frame): void {
    for (const [id, value] of parseSettings(f)) {
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) {
            throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "window over 2^31-1");
          }
        }
      } else if (id === Setting.MAX_FRAME_SIZE) this.#peerMaxFrame = value;
      else if (id === Setting.HEADER_TABLE_SIZE) this.#encoder.setMaxTableSize(value);
    }
    if (!(f.flags & Flag.ACK)) this.#write(encodeSettings([], true));
    this.pump();
  }

  #onWindowUpdate(f: Frame): void {
    const inc = parseWindowUpdate(f);
    if (f.stream === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.#connSendWindow += inc;
      if (this.#connSendWindow > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "window over 2^31-1");
      }
    } else {
      const s = this.#streams.get(f.stream);
      if (!s) {
        if (f.stream > this.#lastStream) {
          throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
        }
        return;
      }
      if (inc === 0) return this.reset(s, ErrorCode.PROTOCOL_ERROR);
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW) return this.reset(s, ErrorCode.FLOW_CONTROL_ERROR);
    }
    this.pump();
  }

  #onRst(f: Frame): void {
    parseRst(f);
    const s = this.#streams.get(f.stream);
    if (!s) {
      if (f.stream > this.#lastStream) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
      }
      return;
    }
    this.#spend("stream resets");
    if (this.#closed) return;
    this.#closeStream(s);
  }

  /** Spends a reset token; an empty bucket is a rapid-reset attack: GOAWAY and close. */
  #spend(what: string): void {
    const now = performance.now();
    this.#tokens = Math.min(
      this.#opts.resetBurst,
      this.#tokens + (now - this.#tokensAt) * this.#opts.resetsPerSecond / 1000,
    );
    this.#tokensAt = now;
    this.#tokens -= 1;
    if (this.#tokens < 0) throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `too many ${what} (rapid reset)`);
  }

  // --- writing ---

  #write(bytes: Uint8Array): void {
    if (this.#closed || this.socket.destroyed) return;
    this.socket.write(bytes);
    if (this.socket.writableLength > MAX_UNSENT) {
      this.#opts.onError?.("HTTP/2 client does not read what it asks for: connection closed", 429);
      this.#destroy();
    }
  }

  sendHeaders(stream: H2Stream, endStream: boolean): void {
    if (stream.closed || stream.headSent) return;
    stream.headSent = true;
    const block = this.#encoder.encode(stream.head ?? [[":status", "500"]]);
    stream.head = undefined;
    const max = this.#peerMaxFrame;
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.byteLength <= max) {
      this.#write(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | end, stream.id, block));
    } else {
      this.#write(encodeFrame(FrameType.HEADERS, end, stream.id, block.subarray(0, max)));
      for (let o = max; o < block.byteLength; o += max) {
        const last = o + max >= block.byteLength;
        this.#write(
          encodeFrame(
            FrameType.CONTINUATION,
            last ? Flag.END_HEADERS : 0,
            stream.id,
            block.subarray(o, o + max),
          ),
        );
      }
    }
    if (endStream) this.#localEnd(stream);
  }

  /** Writes queued DATA within the windows while the socket has room; round robin over streams. */
  pump(): void {
    if (this.#closed) return;
    const ready = [...this.#streams.values()].filter((s) => s.queued > 0 || s.endAfterQueue);
    if (!ready.length) return;
    let progress = true;
    while (progress && this.socket.writableLength < SOCKET_HIGH && !this.#closed) {
      progress = false;
      for (let k = 0; k < ready.length; k++) {
        const s = ready[(this.#rr + k) % ready.length];
        if (s.closed) continue;
        if (s.queued > 0) {
          const n = Math.min(s.queue[0].byteLength, s.sendWindow, this.#connSendWindow, this.#peerMaxFrame);
          if (n <= 0) continue;
          const chunk = s.queue[0];
          const part = chunk.subarray(0, n);
          if (n === chunk.byteLength) s.queue.shift();
          else s.queue[0] = chunk.subarray(n);
          s.queued -= n;
          s.sendWindow -= n;
          this.#connSendWindow -= n;
          const last = s.queued === 0 && s.endAfterQueue;
          this.#write(encodeFrame(FrameType.DATA, last ? Flag.END_STREAM : 0, s.id, part));
          progress = true;
          if (s.queued === 0) {
            const done = s.done;
            s.done = undefined;
            if (last) this.#localEnd(s);
            done?.();
          }
        } else if (s.endAfterQueue) {
          this.#write(encodeFrame(FrameType.DATA, Flag.END_STREAM, s.id));
          this.#localEnd(s);
          progress = true;
        }
        if (this.socket.writableLength >= SOCKET_HIGH) break;
      }
      this.#rr++;
    }
  }

  #localEnd(stream: H2Stream): void {
    stream.localEnded = true;
    stream.endAfterQueue = false;
    if (stream.remoteEnded) return this.#closeStream(stream, false);
    // Answered before the request body ended: the client may stop sending it (section 8.1).
    this.#write(encodeRst(stream.id, ErrorCode.NO_ERROR));
    stream.req!.abort();
    this.#closeStream(stream, false);
  }

  /** Resets one stream (its handler sees the request aborted and the response closed). */
  reset(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    this.#write(encodeRst(stream.id, code));
    this.#closeStream(stream);
  }

  #rstId(id: number, code: number): void {
    this.#write(encodeRst(id, code));
  }

  /** `abnormal`: reset or lost, so the handler's request and response are ended for it. */
  #closeStream(stream: H2Stream, abnormal = true): void {
    if (stream.closed) return;
    stream.closed = true;
    clearTimeout(stream.bodyTimer);
    if (stream.held) this.#opts.bodyBudget?.adjust(-stream.held);
    stream.held = 0;
    this.#streams.delete(stream.id);
    stream.queue = [];
    stream.queued = 0;
    const done = stream.done;
    stream.done = undefined;
    if (abnormal) {
      if (!stream.req!.complete) stream.req!.abort();
      if (!stream.res!.writableFinished) stream.res!.destroy();
    }
    done?.();
    if (this.#streams.size === 0) {
      if (this.#goingAway) return this.#end();
      this.#idle();
    }
  }

  proven(): void {
    if (this.#proven) return;
    this.#proven = true;
    this.#opts.onProven?.();
  }

  // --- ending ---

  /** Sends GOAWAY (no new streams) and closes the connection. */
  goaway(code: number, debug = ""): void {
    if (this.#closed) return;
    this.#write(encodeGoaway(this.#lastStream, code, debug));
    this.#end();
  }

  #end(): void {
    if (this.#closed) return;
    this.#close();
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    this.socket.once("close", () => clearTimeout(t));
  }

  #destroy(): void {
    this.#close();
    this.socket.destroy();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const s of [...this.#streams.values()]) this.#closeStream(s);
  }

  #onClose(): void {
    this.#close();
  }

  #arm(ms: number, why: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#opts.onError?.(`HTTP/2: ${why}`, 408);
      this.goaway(ErrorCode.NO_ERROR, why);
    }, ms);
  }

  /** The idle timer runs while no stream is open (and no header block is half received). */
  #idle(): void {
    clearTimeout(this.#timer);
    if (this.#closed || this.#block || this.#streams.size > 0) return;
    this.#timer = setTimeout(() => this.goaway(ErrorCode.NO_ERROR, "idle"), this.#opts.idleTimeoutMs);
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

export function serveH2(socket: Duplex, opts: H2ServeOptions): H2ServerConnection {
  return new H2ServerConnection(socket, opts);
}
