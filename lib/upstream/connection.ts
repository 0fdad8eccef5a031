/**
 * One keep-alive TLS connection to the upstream, carrying one exchange at a time: it writes the
 * request (head and a small body in one write, or a streamed body with backpressure), parses the
 * answer with lib/http (content-length, chunked or close-delimited bodies) and streams the body into
 * an UpstreamResponse. It offers itself for reuse only after a complete response to a completely
 * sent request.
 */
import type { TLSSocket } from "node:tls";
import type { Readable } from "node:stream";
import {
  type BodyDecoder,
  ChunkedDecoder,
  CloseDecoder,
  encodeChunk,
  LAST_CHUNK,
  LengthDecoder,
} from "../http/body.ts";
import { HttpError } from "../http/errors.ts";
import { NEED_MORE, type ResponseHead, ResponseHeadParser } from "../http/head_parser.ts";
import { UpstreamResponse } from "./response.ts";
import { type ReadGate, readGate } from "../http/read_gate.ts";
import { LiteError, withCode } from "../errors.ts";

export type OutgoingHeaders = Record<string, string | number | readonly string[] | undefined>;

export interface RequestSpec {
  method: string;
  /** Origin-form request target, endpoint prefix included. */
  path: string;
  /** End-to-end headers, lower-case names; `host` is set by the caller. */
  headers: OutgoingHeaders;
  /** A body small enough to hold: sent with the head, and again on a retry. */
  body?: Uint8Array;
  /** A body streamed from the client (framed by its content-length, else chunked). */
  stream?: Readable;
  /** Ask for a protocol switch (101): the socket is handed over instead of pooled. */
  upgrade?: boolean;
}

/** What the exchange reports back; exactly one of response, upgrade or error is called once. */
export interface ExchangeHandlers {
  response(res: UpstreamResponse): void;
  upgrade?(head: ResponseHead, socket: TLSSocket, rest: Uint8Array): void;
  /** No (complete) response head: `gotBytes` says whether any response byte had arrived. */
  error(err: Error, gotBytes: boolean): void;
  /** The exchange is over and the connection goes back to its pool: it is no longer this caller's. */
  released?(): void;
}

type State = "idle" | "head" | "body" | "done";

/** Bodies up to this size go out in the same write as the head. */
const COALESCE_BYTES = 64 * 1024;
const HEADER_VALUE_OK = /^[^\r\n\0]*$/;
const NO_BODY_METHODS = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "CONNECT", "TRACE"]);

/** The error code of an upstream that answered 101 to a request without an upgrade (a 502). */
export const UNEXPECTED_SWITCH = "EUNEXPECTEDSWITCH";

export class UpstreamConnection {
  readonly socket: TLSSocket;
  /** Exchanges completed on this connection (more than 0: a reused connection). */
  completed = 0;
  /** When it last became idle (performance.now()). */
  idleSince = 0;
  closed = false;
  /** Set by the pool: the connection finished an exchange and can carry another. */
  onReusable: (c: UpstreamConnection) => void = () => this.destroy();
  /** Set by the pool: the connection is gone. */
  onClosed: (c: UpstreamConnection) => void = () => {};

  #state: State = "idle";
  #handlers?: ExchangeHandlers;
  #method = "GET";
  #upgrade = false;
  #parser = new ResponseHeadParser();
  #gotBytes = false;
  #res?: UpstreamResponse;
  #decoder?: BodyDecoder;
  #keepAlive = true;
  #requestSent = false;
  #bodySource?: Readable;
  #released?: () => void;
  #error?: Error;

  /** Stops the socket's network reads for real while an answer is unread (pause() alone does not). */
  #gate: ReadGate;

  constructor(socket: TLSSocket) {
    this.socket = socket;
    this.#gate = readGate(socket);
    socket.setNoDelay?.(true);
    socket.on("data", (c: Uint8Array) => this.#onData(c));
    socket.on("end", () => this.#onEnd());
    socket.on("error", (e: Error) => {
      // Where socket errors enter: from here on every error has a code.
      this.#error ??= withCode(e);
      socket.destroy();
    });
    socket.on("close", () => this.#onClose());
    socket.on("drain", () => this.#bodySource?.resume());
  }

  get busy(): boolean {
    return this.#state !== "idle";
  }

  /** Sends one request; the answer comes through `handlers`. */
  send(spec: RequestSpec, handlers: ExchangeHandlers): void {
    if (this.closed || this.#state !== "idle") throw new Error("connection is not idle");
    this.#state = "head";
    this.#handlers = handlers;
    this.#released = handlers.released;
    this.#method = spec.method;
    this.#upgrade = spec.upgrade === true;
    this.#gotBytes = false;
    this.#keepAlive = !this.#upgrade;
    this.#requestSent = false;
    this.#res = undefined;
    this.#parser.reset();
    this.#parser.expect(spec.method);
    this.#gate.start();
    if (this.socket.isPaused()) this.socket.resume();

    let head = `${spec.method} ${spec.path} HTTP/1.1\r\n`;
    const headers = spec.headers;
    let hasLength = false;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      if (name === "content-length") {
        if (spec.body) continue;
        hasLength = true;
      } else if (name === "transfer-encoding") continue;
      if (typeof v === "object") {
        for (const one of v) head += headerLine(name, one);
      } else head += headerLine(name, String(v));
    }
    const chunked = !!spec.stream && !hasLength;
    if (spec.body) head += `content-length: ${spec.body.byteLength}\r\n`;
    else if (chunked) head += "transfer-encoding: chunked\r\n";
    else if (!hasLength && !NO_BODY_METHODS.has(spec.method)) head += "content-length: 0\r\n";
    head += "\r\n";

    const headBytes = Buffer.from(head, "latin1");
    if (spec.body && spec.body.byteLength <= COALESCE_BYTES) {
      this.socket.write(Buffer.concat([headBytes, spec.body]));
      this.#requestSent = true;
    } else if (spec.body) {
      this.socket.write(headBytes);
      this.socket.write(spec.body);
      this.#requestSent = true;
    } else if (spec.stream) {
      this.socket.write(headBytes);
      this.#pumpBody(spec.stream, chunked);
    } else {
      this.socket.write(headBytes);
      this.#requestSent = true;
    }
  }

  /** Streams the client's body up with backpressure both ways (the socket's drain resumes it). */
  #pumpBody(source: Readable, chunked: boolean) {
    this.#bodySource = source;
    const onData = (c: Uint8Array) => {
      if (this.closed) return;
      const ok = chunked ? this.socket.write(encodeChunk(c)) : this.socket.write(c);
      if (!ok) source.pause();
    };
    const done = () => {
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("aborted", onAbort);
      source.off("error", onAbort);
      this.#bodySource = undefined;
    };
    const onEnd = () => {
      done();
      if (chunked && !this.closed) this.socket.write(LAST_CHUNK);
      this.#requestSent = true;
      if (this.#state === "idle") this.#settleIdle();
    };
    // The client gave up mid-body: the upstream must not see a shortened request as complete.
    const onAbort = () => {
      done();
      this.destroy();
    };
    source.on("data", onData);
    source.once("end", onEnd);
    source.once("aborted", onAbort);
    source.once("error", onAbort);
    source.resume();
  }

  #onData(chunk: Uint8Array) {
    switch (this.#state) {
      case "head":
        this.#gotBytes = true;
        return this.#readHead(chunk);
      case "body":
        return this.#readBody(chunk);
      default:
        // Bytes nobody asked for: the connection is out of step; never reuse it.
        this.destroy();
    }
  }

  #readHead(chunk: Uint8Array, start = 0) {
    const at = this.#parser.feed(chunk, start);
    if (at === NEED_MORE) return;
    if (at instanceof HttpError) {
      return this.#failHead(new LiteError("EPROTO", `invalid response from the upstream: ${at.message}`));
    }
    const head = this.#parser.head!;
    const status = head.statusCode;
    if (status === 101 && this.#upgrade && this.#handlers?.upgrade) {
      const handlers = this.#handlers;
      this.#detach();
      handlers.upgrade!(head, this.socket, chunk.subarray(at));
      return;
    }
    if (status === 101) {
      // A protocol switch nobody asked for is not an interim answer: what follows is not ours to read.
      return this.#failHead(
        new LiteError(
          UNEXPECTED_SWITCH,
          "the upstream switched protocols (101) for a request that asked for no upgrade",
        ),
      );
    }
    if (head.informational) {
      // 100 Continue and other interim answers: the real one follows.
      this.#parser.expect(this.#method);
      if (at < chunk.byteLength) this.#readHead(chunk, at);
      return;
    }
    this.#keepAlive = this.#keepAlive && head.keepAlive;
    const push = (c: Uint8Array) => this.#push(c);
    switch (head.body) {
      case "length":
        this.#decoder = new LengthDecoder(head.contentLength, push);
        break;
      case "chunked":
        this.#decoder = new ChunkedDecoder(push);
        break;
      case "close":
        this.#decoder = new CloseDecoder(push);
        this.#keepAlive = false;
        break;
      default:
        this.#decoder = undefined;
    }
    const res = new UpstreamResponse(head, () => {
      if (this.#state === "body") this.#gate.start();
    });
    this.#res = res;
    this.#state = "body";
    this.#handlers!.response(res);
    if (!this.#decoder) {
      this.#complete();
      // Bytes after an answer with no body: the connection is out of step.
      if (at < chunk.byteLength) this.destroy();
    } else if (at < chunk.byteLength) this.#readBody(chunk, at);
  }

  #readBody(bytes: Uint8Array, start = 0) {
    const decoder = this.#decoder!;
    const at = decoder.feed(bytes, start);
    if (at instanceof HttpError) {
      this.#error ??= new LiteError("EPROTO", `invalid response body from the upstream: ${at.message}`);
      return this.destroy();
    }
    if (decoder.done) {
      this.#complete();
      // More bytes than the answer announced: the connection is out of step.
      if (at < bytes.byteLength) this.destroy();
    }
  }

  #push(c: Uint8Array) {
    if (c.byteLength === 0) return;
    const res = this.#res!;
    if (res.destroyed) return;
    if (!res.push(c)) this.#gate.stop();
  }

  #complete() {
    const res = this.#res!;
    res.complete = true;
    // The answer is whole: read on, so an idle connection sees its peer close.
    this.#gate.start();
    this.#state = "idle";
    this.#handlers = undefined;
    this.#res = undefined;
    this.#decoder = undefined;
    this.completed++;
    if (!res.destroyed) res.push(null);
    this.#settleIdle();
  }

  /** Reusable only once the answer is complete and the request fully sent (an early 413 is not). */
  #settleIdle() {
    if (this.closed || this.#state !== "idle" || !this.#requestSent) return;
    if (!this.#keepAlive) return this.destroy();
    const released = this.#released;
    this.#released = undefined;
    released?.();
    this.idleSince = performance.now();
    this.onReusable(this);
  }

  #onEnd() {
    // A close-delimited body ends at the close; whether that close came with TLS close_notify
    // is what tells a whole body from a truncated one (RFC 9112 §9.8), and node:tls in Deno
    // reports a bare TCP FIN exactly as it reports close_notify. So such an answer is never
    // taken as complete: #onClose ends it as cut short (the client's answer is incomplete, the
    // cache keeps nothing).
    this.destroy();
  }

  #onClose() {
    if (this.closed) return;
    this.closed = true;
    if (this.#state === "head") {
      this.#failHead(this.#error ?? new LiteError("ECONNRESET", "socket hang up"));
    } else if (this.#state === "body") {
      // Close-delimited bodies included: see #onEnd.
      this.#res?.abort();
    }
    this.#state = "done";
    this.#bodySource = undefined;
    this.onClosed(this);
  }

  #failHead(err: Error) {
    const handlers = this.#handlers;
    this.#handlers = undefined;
    this.#state = "done";
    this.destroy();
    handlers?.error(err, this.#gotBytes);
  }

  /** Hands the socket over (upgrades): no more parsing, no pooling. */
  #detach() {
    this.#state = "done";
    this.#handlers = undefined;
    this.closed = true;
    // Paused until the new owner reads: bytes emitted with no listener would be lost.
    this.socket.pause();
    this.socket.removeAllListeners("data");
    this.socket.removeAllListeners("end");
    this.socket.removeAllListeners("close");
    this.socket.removeAllListeners("drain");
    this.socket.removeAllListeners("error");
    this.onClosed(this);
  }

  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

function headerLine(name: string, value: string): string {
  if (!HEADER_VALUE_OK.test(value)) {
    throw new LiteError("ERR_INVALID_CHAR", `header ${name} holds a line break`);
  }
  return `${name}: ${value}\r\n`;
}
