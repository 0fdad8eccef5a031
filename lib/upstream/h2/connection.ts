/**
 * One HTTP/2 client connection to the upstream (RFC 9113), carrying many exchanges as streams.
 * Answers are UpstreamResponses, as on the HTTP/1.1 path, so the proxy cannot tell them apart.
 *
 * Memory: what the server may send is bounded by the windows we grant, and we grant window back
 * only as the consumer reads (the response's _read), per stream and per connection. A stream whose
 * reader stops holds at most `streamWindow` bytes; the connection at most `connectionWindow`.
 * Header blocks (HEADERS + CONTINUATION) are bounded by `maxHeaderListSize`, compressed and decoded.
 *
 * Health: a PING goes out when nothing was read for `readIdleMs`; no answer within `pingTimeoutMs`
 * and the connection is declared dead (every stream fails or is aborted), as client-go does.
 * GOAWAY from the server: no new streams here; streams above its last-stream-id fail as retryable
 * (never processed), the others finish. RST_STREAM fails only its stream.
 */
import type { Duplex, Readable } from "node:stream";
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
  errorName,
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
} from "../../http2/frame.ts";
import { type HeaderField, HpackDecoder, HpackEncoder, HpackError } from "../../http2/hpack.ts";
import { UpstreamResponse } from "../response.ts";
import type { ExchangeHandlers, RequestSpec } from "../connection.ts";
import { addHeader, newHeaderMap } from "../../http/headers.ts";
import { statusText } from "../../http/status_text.ts";
import type { ResponseHead } from "../../http/head_parser.ts";
import { LiteError, withCode } from "../../errors.ts";

export interface H2Options {
  /** Send a PING after this long without reading anything (client-go: 30 s). */
  readIdleMs?: number;
  /** A PING unanswered this long: the connection is dead (client-go: 15 s). */
  pingTimeoutMs?: number;
  /** Window granted per stream (at least 128 KiB). */
  streamWindow?: number;
  /** Window granted for the whole connection. */
  connectionWindow?: number;
  /** Bound on one response's header block, compressed and decoded. */
  maxHeaderListSize?: number;
  /** The server's first SETTINGS must arrive within this. */
  settingsTimeoutMs?: number;
  /** A connection with no streams closes after this long. */
  idleMs?: number;
}

const DEFAULTS: Required<H2Options> = {
  readIdleMs: 30_000,
  pingTimeoutMs: 15_000,
  streamWindow: 256 * 1024,
  connectionWindow: 16 * 1024 * 1024,
  maxHeaderListSize: 256 * 1024,
  settingsTimeoutMs: 10_000,
  idleMs: 30_000,
};

/**
 * An answer with a content-length up to this is handed over only once whole, as an HTTP/1.1 answer
 * read in one chunk is: a connection lost before then is an error the pool may retry, or the cache
 * answers, instead of a body cut short for the client. Its bytes are within the stream window.
 */
const WHOLE_BYTES = 64 * 1024;
/** Twice UpstreamResponse's highWaterMark (64 KiB). */
const MIN_STREAM_WINDOW = 128 * 1024;
/** More CONTINUATION frames than this for one header block is a flood. */
const MAX_CONTINUATIONS = 256;
/** Bytes written but not yet taken by the socket, beyond which the connection is given up. */
const MAX_UNSENT_BYTES = 1024 * 1024;
/** A request body queued beyond this pauses its source until the window lets it out. */
const BODY_QUEUE_BYTES = 64 * 1024;
const HEADER_VALUE_OK = /^[^\r\n\0]*$/;
/** Fields that mean nothing in HTTP/2 (RFC 9113 section 8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "host",
  "http2-settings",
]);
const NO_BODY_METHODS = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "CONNECT", "TRACE"]);

class Stream {
  /** Final response head arrived. */
  answered = false;
  /** The answer waits to be handed over (at the end of the current socket chunk, or when whole). */
  pending = false;
  /** A small answer of known length is handed over only once whole (see WHOLE_BYTES). */
  holdUntilWhole = false;
  /** Bytes of response header block being collected (HEADERS then CONTINUATION). */
  res?: UpstreamResponse;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  sendWindow: number;
  recvAvail: number;
  /** Body bytes pushed into `res`, and of those, how many were given back as stream window. */
  pushed = 0;
  returned = 0;
  /** Of `pushed`, how many were counted as consumed for the connection window. */
  connCounted = 0;
  /** A content-length to check the body against (-1: none). */
  expectLength = -1;
  isHead = false;
  queue: Uint8Array[] = [];
  queued = 0;
  /** The request body ends after the queue (END_STREAM still to send). */
  endAfterQueue = false;
  source?: Readable;
  detachSource?: () => void;

  constructor(
    readonly id: number,
    public handlers: ExchangeHandlers | undefined,
    sendWindow: number,
    recv: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvAvail = recv;
  }
}

export class H2Connection {
  readonly socket: Duplex;
  readonly opts: Required<H2Options>;
  /** Resolves when the server's SETTINGS arrived (the stream limit is known). */
  readonly ready: Promise<void>;
  closed = false;
  /** No new streams (GOAWAY either way, or ids exhausted); closes when the last stream ends. */
  draining = false;
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says). */
  peerMaxStreams = Infinity;
  /** Streams ever opened here (more than 0: a reused connection). */
  opened = 0;
  /** Set by the pool: room for another stream (a stream ended, a limit went up). */
  onCapacity: (c: H2Connection) => void = () => {};
  onClosed: (c: H2Connection) => void = () => {};

  #streams = new Map<number, Stream>();
  #nextId = 1;
  #reader: FrameReader;
  #encoder = new HpackEncoder();
  #decoder: HpackDecoder;
  #settled = false;
  #resolveReady!: () => void;
  #rejectReady!: (e: Error) => void;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #connSendWindow = DEFAULT_WINDOW;
  #connRecvAvail: number;
  #connConsumed = 0;
  /** A header block being collected: its stream and parts. */
  #block?: { stream: number; parts: Uint8Array[]; size: number; frames: number; endStream: boolean };
  /** Responses to hand over once the current socket chunk is processed (so a small whole answer is complete). */
  #toAnswer: Stream[] = [];
  #lastRead = performance.now();
  #idleTimer?: ReturnType<typeof setTimeout>;
  #pingTimer?: ReturnType<typeof setTimeout>;
  #pingData?: Uint8Array;
  #emptyTimer?: ReturnType<typeof setTimeout>;
  #settingsTimer?: ReturnType<typeof setTimeout>;
  #error?: Error;
  #backedUp = false;

  constructor(socket: Duplex, opts: H2Options = {}) {
    this.socket = socket;
    this.opts = { ...DEFAULTS, ...opts };
    // Above the response's highWaterMark: when its _read asks for more with the window spent,
    // some bytes were consumed and are granted back (else the stream would stall for good).
    this.opts.streamWindow = Math.min(MAX_WINDOW, Math.max(MIN_STREAM_WINDOW, this.opts.streamWindow));
    this.opts.connectionWindow = Math.min(MAX_WINDOW, Math.max(DEFAULT_WINDOW, this.opts.connectionWindow));
    this.#connRecvAvail = this.opts.connectionWindow;
    this.#decoder = new HpackDecoder({ maxHeaderListSize: this.opts.maxHeaderListSize });
    this.#reader = new FrameReader(DEFAULT_MAX_FRAME_SIZE, (f) => this.#onFrame(f));
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {});
    (socket as { setNoDelay?(b: boolean): void }).setNoDelay?.(true);
    socket.on("data", (c: Uint8Array) => this.#onData(c));
    socket.on("end", () => this.destroy());
    socket.on("error", (e: Error) => {
      // Where socket errors enter: from here on every error has a code.
      this.#error ??= withCode(e);
      socket.destroy();
    });
    socket.on("close", () => this.#onClose());
    socket.on("drain", () => {
      this.#backedUp = false;
      this.#flush();
    });

    const settings: [number, number][] = [
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, this.opts.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.opts.maxHeaderListSize],
    ];
    const hello = [CLIENT_PREFACE, encodeSettings(settings)];
    if (this.opts.connectionWindow > DEFAULT_WINDOW) {
      hello.push(encodeWindowUpdate(0, this.opts.connectionWindow - DEFAULT_WINDOW));
    }
    this.#write(concat(hello));
    this.#settingsTimer = setTimeout(() => {
      if (!this.#settled) this.#fail(new LiteError("ETIMEDOUT", "the upstream sent no HTTP/2 SETTINGS"));
    }, this.opts.settingsTimeoutMs);
    this.#armIdle();
    this.#armEmpty();
  }

  /** Streams open now. */
  get streams(): number {
    return this.#streams.size;
  }

  /** How many more streams this connection takes now. */
  get capacity(): number {
    if (this.closed || this.draining || !this.#settled) return 0;
    return Math.max(0, this.peerMaxStreams - this.#streams.size);
  }

  /** Sends one request as a new stream; the answer comes through `handlers` as on HTTP/1.1. */
  request(spec: RequestSpec, handlers: ExchangeHandlers): { cancel(): void } {
    if (this.capacity <= 0) {
      throw new LiteError("EAGAIN", "no room for another HTTP/2 stream", { retryable: true });
    }
    const fields = requestFields(spec);
    const id = this.#nextId;
    this.#nextId += 2;
    if (this.#nextId > MAX_WINDOW) this.draining = true;
    const s = new Stream(id, handlers, this.#peerInitialWindow, this.opts.streamWindow);
    s.isHead = spec.method === "HEAD";
    this.#streams.set(id, s);
    this.opened++;
    this.#disarmEmpty();
    const block = this.#encoder.encode(fields, { sensitive: isSensitive });
    const noBody = !spec.body && !spec.stream;
    this.#writeHeaders(id, block, noBody);
    if (noBody) s.localEnded = true;
    else if (spec.body) {
      s.queue.push(spec.body);
      s.queued = spec.body.byteLength;
      s.endAfterQueue = true;
      this.#flush();
    } else if (spec.stream) this.#pump(s, spec.stream);
    return {
      cancel: () => this.#reset(s, ErrorCode.CANCEL, new LiteError("ECANCELED", "request cancelled")),
    };
  }

  /** Our GOAWAY (a retired credential): no new streams, in-flight ones finish, then the socket closes. */
  goaway(): void {
    if (this.closed) return;
    if (!this.draining) this.#write(encodeGoaway(0, ErrorCode.NO_ERROR));
    this.draining = true;
    this.#closeIfDrained();
  }

  destroy(err?: Error): void {
    if (err) this.#error ??= err;
    if (!this.socket.destroyed) this.socket.destroy();
    else this.#onClose();
  }

  // --- reading ---

  #onData(chunk: Uint8Array) {
    if (this.closed) return;
    this.#lastRead = performance.now();
    try {
      this.#reader.feed(chunk);
    } catch (e) {
      if (e instanceof H2Error) return this.#connectionError(e.h2code, e.message);
      if (e instanceof HpackError) return this.#connectionError(ErrorCode.COMPRESSION_ERROR, e.message);
      throw e;
    } finally {
      this.#deliver();
    }
  }

  #onFrame(f: Frame) {
    if (this.closed) return;
    if (this.#block && f.type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "a header block was interrupted by another frame");
    }
    if (!this.#settled && f.type !== FrameType.SETTINGS) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "the server's preface is not a SETTINGS frame");
    }
    switch (f.type) {
      case FrameType.DATA:
        return this.#onDataFrame(f);
      case FrameType.HEADERS:
        return this.#onHeaders(f);
      case FrameType.CONTINUATION:
        return this.#onContinuation(f);
      case FrameType.PRIORITY:
        if (f.stream === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (f.payload.byteLength !== 5) {
          throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY length not 5");
        }
        return;
      case FrameType.RST_STREAM:
        return this.#onRst(f);
      case FrameType.SETTINGS:
        return this.#onSettings(f);
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled");
      case FrameType.PING:
        return this.#onPing(f);
      case FrameType.GOAWAY:
        return this.#onGoaway(f);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(f);
      default:
        // Unknown frame types are ignored (RFC 9113 section 4.1).
        return;
    }
  }

  /** A stream id the server may talk about: one we opened (it may be closed since). */
  #checkOurs(id: number) {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "stream frame on stream 0");
    if (id % 2 === 0 || id >= this.#nextId) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `frame on stream ${id}, which was never opened`);
    }
  }

  #onSettings(f: Frame) {
    const list = parseSettings(f);
    if (f.flags & Flag.ACK) return;
    for (const [id, value] of list) {
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(value);
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const s of this.#streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              throw new H2Error(
                ErrorCode.FLOW_CONTROL_ERROR,
                "INITIAL_WINDOW_SIZE overflows a stream window",
              );
            }
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          this.#peerMaxFrame = value;
          break;
      }
    }
    this.#write(encodeSettings([], true));
    if (!this.#settled) {
      this.#settled = true;
      clearTimeout(this.#settingsTimer);
      this.#resolveReady();
    }
    this.#flush();
    if (this.capacity > 0) this.onCapacity(this);
  }

  #onPing(f: Frame) {
    if (f.stream !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (f.payload.byteLength !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING length not 8");
    if (f.flags & Flag.ACK) {
      if (this.#pingData && equal(this.#pingData, f.payload)) {
        this.#pingData = undefined;
        clearTimeout(this.#pingTimer);
        this.#armIdle();
      }
      return;
    }
    this.#write(encodePing(f.payload, true));
  }

  #onGoaway(f: Frame) {
    const { lastStream, code, debug } = parseGoaway(f);
    this.draining = true;
    const why = `the upstream sent GOAWAY ${errorName(code)}${debug ? ` (${debug})` : ""}`;
    for (const s of [...this.#streams.values()]) {
      // Above last-stream-id: never processed, safe to send again elsewhere.
      if (s.id > lastStream) this.#closeStream(s, new LiteError("ECONNRESET", why, { retryable: true }));
    }
    this.#closeIfDrained();
  }

  #onWindowUpdate(f: Frame) {
    const inc = parseWindowUpdate(f);
    if (f.stream === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.#connSendWindow += inc;
      if (this.#connSendWindow > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window over 2^31-1");
      }
      return this.#flush();
    }
    this.#checkOurs(f.stream);
    const s = this.#streams.get(f.stream);
    if (!s) return;
    if (inc === 0) {
      return this.#reset(s, ErrorCode.PROTOCOL_ERROR, new LiteError("EPROTO", "WINDOW_UPDATE of 0"));
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.#reset(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        new LiteError("EPROTO", "stream window over 2^31-1"),
      );
    }
    this.#flush();
  }

  #onRst(f: Frame) {
    const code = parseRst(f);
    this.#checkOurs(f.stream);
    const s = this.#streams.get(f.stream);
    if (!s) return;
    s.remoteEnded = true;
    s.localEnded = true;
    // An answer already complete: the server merely stops reading our body (RFC 9113 8.1).
    if (code === ErrorCode.NO_ERROR && s.res?.complete) return this.#closeStream(s);
    const refused = code === ErrorCode.REFUSED_STREAM;
    // `streamReset`: the connection is alive, so the endpoint is reachable (no health failure).
    const err = new LiteError("ECONNRESET", `the upstream reset the stream: ${errorName(code)}`, {
      retryable: refused,
    });
    this.#closeStream(s, Object.assign(err, { streamReset: true }));
  }

  #onHeaders(f: Frame) {
    this.#checkOurs(f.stream);
    const frag = unpad(f);
    this.#block = {
      stream: f.stream,
      parts: [],
      size: 0,
      frames: 0,
      endStream: (f.flags & Flag.END_STREAM) !== 0,
    };
    this.#addFragment(frag, f.flags);
  }

  #onContinuation(f: Frame) {
    const b = this.#block;
    if (!b || f.stream !== b.stream) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place");
    if (++b.frames > MAX_CONTINUATIONS) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, "too many CONTINUATION frames for one header block");
    }
    this.#addFragment(f.payload, f.flags);
  }

  #addFragment(frag: Uint8Array, flags: number) {
    const b = this.#block!;
    b.size += frag.byteLength;
    if (b.size > this.opts.maxHeaderListSize) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, "response header block over the size limit");
    }
    b.parts.push(frag.slice());
    if (!(flags & Flag.END_HEADERS)) return;
    this.#block = undefined;
    // Decoded even for a stream we no longer track: the compression table must stay in step.
    const fields = this.#decoder.decode(concat(b.parts));
    const s = this.#streams.get(b.stream);
    if (!s || s.remoteEnded) return;
    this.#onFields(s, fields, b.endStream);
  }

  #onFields(s: Stream, fields: HeaderField[], endStream: boolean) {
    if (s.answered) {
      // Trailers: they must end the stream; their content is not relayed.
      if (!endStream) {
        return this.#reset(
          s,
          ErrorCode.PROTOCOL_ERROR,
          new LiteError("EPROTO", "trailers without END_STREAM"),
        );
      }
      return this.#endRemote(s);
    }
    const head = responseHead(fields);
    if (head instanceof Error) return this.#reset(s, ErrorCode.PROTOCOL_ERROR, head);
    if (head.informational) {
      if (endStream) {
        return this.#reset(s, ErrorCode.PROTOCOL_ERROR, new LiteError("EPROTO", "1xx ended the stream"));
      }
      return;
    }
    s.answered = true;
    s.expectLength = s.isHead || head.statusCode === 204 || head.statusCode === 304 ? -1 : head.contentLength;
    const res = new UpstreamResponse(head, () => this.#consumed(s));
    s.res = res;
    res.once("close", () => {
      // The reader went away before the end: stop the stream, give its unread bytes back.
      if (!s.closed) this.#reset(s, ErrorCode.CANCEL);
      this.#creditConn(s, true);
    });
    s.pending = true;
    if (s.expectLength > 0 && s.expectLength <= WHOLE_BYTES && !endStream) s.holdUntilWhole = true;
    else this.#toAnswer.push(s);
    if (endStream) this.#endRemote(s);
  }

  #onDataFrame(f: Frame) {
    this.#checkOurs(f.stream);
    const len = f.payload.byteLength;
    if (len > this.#connRecvAvail) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    this.#connRecvAvail -= len;
    const s = this.#streams.get(f.stream);
    if (!s || s.remoteEnded) {
      // A stream we reset or finished: the bytes still count against the connection window.
      this.#connConsumed += len;
      return this.#grantConn();
    }
    if (len > s.recvAvail) {
      this.#connConsumed += len;
      this.#grantConn();
      return this.#reset(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        new LiteError("EPROTO", "DATA beyond the stream window"),
      );
    }
    s.recvAvail -= len;
    if (!s.answered || !s.res) {
      this.#connConsumed += len;
      this.#grantConn();
      return this.#reset(
        s,
        ErrorCode.PROTOCOL_ERROR,
        new LiteError("EPROTO", "DATA before the response head"),
      );
    }
    const body = unpad(f);
    // Padding is flow-controlled but never read: it is given back at once.
    const pad = len - body.byteLength;
    if (pad) {
      s.recvAvail += pad;
      this.#connConsumed += pad;
    }
    s.pushed += body.byteLength;
    if (s.expectLength >= 0 && s.pushed > s.expectLength) {
      return this.#reset(
        s,
        ErrorCode.PROTOCOL_ERROR,
        new LiteError("EPROTO", "more body than content-length"),
      );
    }
    if (body.byteLength && !s.res.destroyed) s.res.push(body);
    if (pad) this.#grant(s);
    if (f.flags & Flag.END_STREAM) this.#endRemote(s);
  }

  /** The reader took bytes out of a response: give that much window back. */
  #consumed(s: Stream) {
    this.#creditConn(s, false);
    this.#grant(s);
  }

  #creditConn(s: Stream, all: boolean) {
    const res = s.res;
    if (!res) return;
    const out = all ? s.pushed : s.pushed - res.readableLength;
    const delta = out - s.connCounted;
    if (delta <= 0) return;
    s.connCounted = out;
    this.#connConsumed += delta;
    this.#grantConn();
  }

  #grant(s: Stream) {
    if (s.closed || s.remoteEnded || !s.res) return;
    const consumed = s.pushed - s.res.readableLength - s.returned;
    const w = this.opts.streamWindow;
    // Small updates only when the server is running short: no deadlock, few frames.
    if (consumed <= 0 || (consumed < w / 4 && s.recvAvail >= w / 2)) return;
    s.returned += consumed;
    s.recvAvail += consumed;
    this.#write(encodeWindowUpdate(s.id, consumed));
  }

  #grantConn() {
    const n = this.#connConsumed;
    const w = this.opts.connectionWindow;
    if (n <= 0 || (n < w / 4 && this.#connRecvAvail >= w / 2)) return;
    this.#connConsumed = 0;
    this.#connRecvAvail += n;
    if (!this.closed) this.#write(encodeWindowUpdate(0, n));
  }

  #endRemote(s: Stream) {
    s.remoteEnded = true;
    const res = s.res;
    if (res) {
      if (s.expectLength >= 0 && s.pushed !== s.expectLength) {
        return this.#reset(
          s,
          ErrorCode.PROTOCOL_ERROR,
          new LiteError("EPROTO", "body shorter than content-length"),
        );
      }
      res.complete = true;
      if (!res.destroyed) res.push(null);
      if (s.holdUntilWhole) this.#toAnswer.push(s);
    }
    if (!s.localEnded) {
      // The whole answer is here before our body was sent (an early 413): stop sending.
      this.#write(encodeRst(s.id, ErrorCode.CANCEL));
      s.localEnded = true;
    }
    this.#closeStream(s);
  }

  /** Hands over the answers whose heads arrived in the chunk just read. */
  #deliver() {
    for (const s of this.#toAnswer.splice(0)) {
      if (!s.pending) continue;
      s.pending = false;
      const handlers = s.handlers;
      handlers?.response(s.res!);
      if (s.closed) {
        s.handlers = undefined;
        handlers?.released?.();
      }
    }
  }

  // --- writing ---

  #write(bytes: Uint8Array) {
    if (this.socket.destroyed) return;
    if (!this.socket.write(bytes)) this.#backedUp = true;
    // DATA waits for 'drain'; what still piles up is answers to the server's own frames (PING,
    // SETTINGS) or our headers: a server that floods them and stops reading is cut off.
    if ((this.socket.writableLength ?? 0) > MAX_UNSENT_BYTES) {
      this.#error ??= new LiteError("ENOBUFS", "the upstream stopped reading our HTTP/2 frames");
      this.socket.destroy();
    }
  }

  #writeHeaders(id: number, block: Uint8Array, endStream: boolean) {
    const max = this.#peerMaxFrame;
    const frames: Uint8Array[] = [];
    let first = true;
    for (let at = 0; first || at < block.byteLength; at += max) {
      const part = block.subarray(at, at + max);
      const last = at + max >= block.byteLength;
      const flags = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      frames.push(encodeFrame(first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, id, part));
      first = false;
    }
    // One write: nothing may come between HEADERS and its CONTINUATIONs.
    this.#write(concat(frames));
  }

  /** Streams the client's body up: paused while its queue is full, resumed as the window drains it. */
  #pump(s: Stream, source: Readable) {
    s.source = source;
    const onData = (c: Uint8Array) => {
      if (s.closed) return;
      s.queue.push(c);
      s.queued += c.byteLength;
      if (s.queued > BODY_QUEUE_BYTES) source.pause();
      this.#flush();
    };
    const onEnd = () => {
      detach();
      s.endAfterQueue = true;
      this.#flush();
    };
    // The client gave up mid-body: only this stream is reset, never the connection.
    const onAbort = () => {
      detach();
      this.#reset(
        s,
        ErrorCode.CANCEL,
        new LiteError("ECONNRESET", "the client's request body was cut short"),
      );
    };
    const detach = () => {
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("aborted", onAbort);
      source.off("error", onAbort);
      s.source = undefined;
      s.detachSource = undefined;
    };
    s.detachSource = detach;
    source.on("data", onData);
    source.once("end", onEnd);
    source.once("aborted", onAbort);
    source.once("error", onAbort);
    source.resume();
  }

  /** Sends queued body bytes as the windows and the socket allow. */
  #flush() {
    if (this.closed) return;
    for (const s of this.#streams.values()) {
      if (this.#backedUp) return;
      while (s.queued > 0 && !this.#backedUp) {
        const room = Math.min(this.#connSendWindow, s.sendWindow, this.#peerMaxFrame);
        if (room <= 0) break;
        const chunk = take(s, room);
        this.#connSendWindow -= chunk.byteLength;
        s.sendWindow -= chunk.byteLength;
        const last = s.queued === 0 && s.endAfterQueue;
        this.#write(encodeFrame(FrameType.DATA, last ? Flag.END_STREAM : 0, s.id, chunk));
        if (last) s.localEnded = true;
      }
      if (s.queued === 0 && s.endAfterQueue && !s.localEnded && !this.#backedUp) {
        this.#write(encodeFrame(FrameType.DATA, Flag.END_STREAM, s.id));
        s.localEnded = true;
      }
      if (s.source && s.queued < BODY_QUEUE_BYTES / 4 && s.source.isPaused()) s.source.resume();
      if (s.localEnded && s.remoteEnded) this.#closeStream(s);
    }
  }

  // --- ending streams and the connection ---

  /** Ends a stream on our side with RST_STREAM; `err` goes to its caller. */
  #reset(s: Stream, code: number, err?: Error) {
    if (s.closed) return;
    this.#write(encodeRst(s.id, code));
    s.localEnded = true;
    s.remoteEnded = true;
    this.#closeStream(s, err ?? new LiteError("ECONNRESET", "stream reset"));
  }

  /** Forgets a stream; a pending caller gets `err`, a started answer is aborted. */
  #closeStream(s: Stream, err?: Error) {
    if (s.closed) return;
    s.closed = true;
    s.detachSource?.();
    s.queue = [];
    s.queued = 0;
    this.#streams.delete(s.id);
    const handlers = s.handlers;
    if (err) {
      if (!s.answered || s.pending) {
        // The caller never saw an answer: it gets the error instead.
        s.pending = false;
        s.handlers = undefined;
        s.res?.destroy();
        handlers?.error(err, false);
      } else if (s.res && !s.res.complete) {
        this.#creditConn(s, true);
        s.res.abort();
      }
    }
    // A pending answer is handed over first; then the caller is told the stream is done.
    if (!s.pending) {
      s.handlers = undefined;
      handlers?.released?.();
    }
    this.#armEmpty();
    this.#closeIfDrained();
    if (!this.closed && this.capacity > 0) this.onCapacity(this);
  }

  #closeIfDrained() {
    if (this.draining && this.#streams.size === 0 && !this.closed) {
      // Let queued frames (GOAWAY, RST, window updates) out first.
      this.socket.end();
      setTimeout(() => this.destroy(), 1_000);
    }
  }

  #connectionError(code: number, message: string) {
    if (this.closed) return;
    this.#write(encodeGoaway(0, code, message.slice(0, 200)));
    this.#fail(
      new LiteError("EPROTO", `HTTP/2 protocol error from the upstream: ${message}`),
    );
  }

  #fail(err: Error) {
    this.#error ??= err;
    this.socket.end();
    this.destroy();
  }

  #onClose() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#pingTimer);
    clearTimeout(this.#emptyTimer);
    clearTimeout(this.#settingsTimer);
    const err = this.#error ?? new LiteError("ECONNRESET", "the upstream closed the HTTP/2 connection");
    this.#rejectReady(err);
    this.#deliver();
    for (const s of [...this.#streams.values()]) this.#closeStream(s, err);
    this.onClosed(this);
  }

  // --- health ---

  #armIdle() {
    clearTimeout(this.#idleTimer);
    if (this.closed) return;
    const wait = Math.max(0, this.#lastRead + this.opts.readIdleMs - performance.now());
    this.#idleTimer = setTimeout(() => this.#onIdle(), wait);
    Deno.unrefTimer(this.#idleTimer as unknown as number);
  }

  #onIdle() {
    if (this.closed || this.#pingData) return;
    if (performance.now() - this.#lastRead < this.opts.readIdleMs) return this.#armIdle();
    this.#pingData = crypto.getRandomValues(new Uint8Array(8));
    this.#write(encodePing(this.#pingData));
    this.#pingTimer = setTimeout(() => {
      this.#fail(new LiteError("ETIMEDOUT", "the upstream did not answer an HTTP/2 PING"));
    }, this.opts.pingTimeoutMs);
    Deno.unrefTimer(this.#pingTimer as unknown as number);
  }

  /** A connection with no streams for `idleMs` says goodbye. */
  #armEmpty() {
    if (this.closed || this.#streams.size || this.#emptyTimer) return;
    this.#emptyTimer = setTimeout(() => {
      this.#emptyTimer = undefined;
      if (!this.#streams.size) this.goaway();
    }, this.opts.idleMs);
    Deno.unrefTimer(this.#emptyTimer as unknown as number);
  }

  #disarmEmpty() {
    clearTimeout(this.#emptyTimer);
    this.#emptyTimer = undefined;
  }
}

function take(s: Stream, n: number): Uint8Array {
  const first = s.queue[0];
  let out: Uint8Array;
  if (first.byteLength <= n) {
    out = s.queue.shift()!;
  } else {
    out = first.subarray(0, n);
    s.queue[0] = first.subarray(n);
  }
  s.queued -= out.byteLength;
  return out;
}

function isSensitive(name: string): boolean {
  return name === "authorization" || name === "proxy-authorization" || name === "cookie";
}

/** The request's header list: pseudo-headers first, connection-specific fields dropped. */
export function requestFields(spec: RequestSpec): HeaderField[] {
  const h = spec.headers;
  const authority = h.host ?? h[":authority"];
  if (authority === undefined) throw new LiteError("ERR_INVALID_ARG_VALUE", "request without a host");
  const fields: HeaderField[] = [
    [":method", spec.method],
    [":scheme", "https"],
    [":authority", String(authority)],
    [":path", spec.path],
  ];
  let hasLength = false;
  for (const raw in h) {
    const v = h[raw];
    if (v === undefined) continue;
    const name = raw.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || name.startsWith(":")) continue;
    if (name === "te") {
      if (String(v).toLowerCase().trim() === "trailers") fields.push(["te", "trailers"]);
      continue;
    }
    if (name === "content-length") {
      if (spec.body) continue;
      hasLength = true;
    }
    for (const one of typeof v === "object" ? v : [String(v)]) {
      if (!HEADER_VALUE_OK.test(one)) {
        throw new LiteError("ERR_INVALID_CHAR", `header ${name} holds a line break`);
      }
      fields.push([name, one]);
    }
  }
  if (spec.body) fields.push(["content-length", String(spec.body.byteLength)]);
  else if (!spec.stream && !hasLength && !NO_BODY_METHODS.has(spec.method)) {
    fields.push(["content-length", "0"]);
  }
  return fields;
}

/** A response head from decoded fields, or the reason it is malformed (RFC 9113 section 8.3.2). */
function responseHead(fields: HeaderField[]): ResponseHead | Error {
  const headers = newHeaderMap();
  const rawHeaders: string[] = [];
  let status = -1;
  let regular = false;
  for (const [name, value] of fields) {
    if (name.startsWith(":")) {
      if (regular || name !== ":status" || status !== -1) {
        return new LiteError("EPROTO", `bad pseudo-header ${name}`);
      }
      if (!/^\d{3}$/.test(value)) return new LiteError("EPROTO", `bad :status ${value}`);
      status = Number(value);
      continue;
    }
    regular = true;
    if (name !== name.toLowerCase() || CONNECTION_SPECIFIC.has(name) && name !== "host") {
      return new LiteError("EPROTO", `malformed response field ${name}`);
    }
    if (!HEADER_VALUE_OK.test(value)) {
      return new LiteError("EPROTO", `response field ${name} holds a line break`);
    }
    addHeader(headers, name, value);
    rawHeaders.push(name, value);
  }
  if (status < 100) return new LiteError("EPROTO", "response without :status");
  const cl = headers["content-length"];
  let contentLength = -1;
  if (cl !== undefined) {
    if (!/^\d{1,15}$/.test(String(cl))) return new LiteError("EPROTO", `bad content-length ${cl}`);
    contentLength = Number(cl);
  }
  return {
    versionMinor: 1,
    httpVersion: "1.1",
    headers,
    rawHeaders,
    body: contentLength >= 0 ? "length" : "close",
    contentLength,
    keepAlive: true,
    statusCode: status,
    statusMessage: statusText(status),
    informational: status < 200,
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
