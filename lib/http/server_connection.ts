/**
 * Serves HTTP/1.1 on one connection (a TLS socket): parses requests as they arrive, hands each to
 * the request handler with a streamed body, answers them in order, keeps the connection alive
 * between them, and hands `Upgrade` requests over with the raw socket. Request heads are timed
 * (a slow sender is cut after the header timeout), idle connections are closed, request bodies
 * are bounded. Nothing thrown by a handler or caused by a client escapes: protocol errors get
 * their 4xx and the connection closes; a handler's exception gets a 500.
 */
import type { Duplex } from "node:stream";
import { type BodyDecoder, ChunkedDecoder, LengthDecoder } from "./body.ts";
import type { BodyBudget } from "./body_budget.ts";
import { HttpError } from "./errors.ts";
import { type HeadLimits, NEED_MORE, type RequestHead, RequestHeadParser } from "./head_parser.ts";
import { type ReadGate, readGate } from "./read_gate.ts";
import { passed } from "./reclaim.ts";
import { ServerRequest } from "./request.ts";
import { type ResponseSink, ServerResponse } from "./response.ts";
import { statusText } from "./status_text.ts";
import { DeadlineSet, type Expiring, type Timers } from "../timers.ts";

/** How a connection is served. */
export interface ConnectionOptions {
  /** A request's head must arrive whole within this time of its first byte (and of connecting). */
  headerTimeoutMs: number;
  /** An idle keep-alive connection is closed after this time. */
  idleTimeoutMs: number;
  /** Larger request bodies are answered 413 (before reading them when Content-Length says so). */
  maxRequestBodyBytes: number;
  limits?: Partial<HeadLimits>;
  /** A request to answer. May throw: the client then gets a 500. */
  onRequest(req: ServerRequest, res: ServerResponse): void;
  /** An upgrade request: the socket and the bytes read after its head now belong to the handler. */
  onUpgrade(req: ServerRequest, socket: Duplex, head: Uint8Array): void;
  /** The body of an error answer (e.g. a Kubernetes Status), for protocol errors and timeouts. */
  errorBody(status: number, message: string): { contentType: string; body: string };
  /** A handler threw or a protocol error was answered. */
  onError?(message: string, status: number): void;
  // --- bounds (issue 18): pipelining, body time, body memory ---
  /**
   * Requests served back to back from bytes sent before the previous answer went out (pipelining);
   * one more closes the connection unanswered. Clients of the API never pipeline. Default 32.
   */
  maxPipelinedRequests?: number;
  /** Longest silence between request-body bytes while we wait for them (0: none). */
  bodyIdleTimeoutMs?: number;
  /** A request body must arrive whole within this time of its head (0: none). */
  bodyTimeoutMs?: number;
  /** The process-wide budget for request-body bytes held in memory. */
  bodyBudget?: BodyBudget;
  /** A request with an Authorization header got a 2xx/3xx answer: its token is known upstream. */
  onProven?(): void;
  /** The server's connection deadlines (`connectionDeadlines`): one sweep for all its connections. */
  deadlines: DeadlineSet<Expiring>;
}

/** What the listener may ask of a served connection. */
export interface ServedConnection {
  /** A request is in progress (head begun, body or answer under way). */
  busy(): boolean;
}

/** Pipelined bytes held while a response is in progress before the socket is paused. */
const MAX_PIPELINED = 64 * 1024;
/** An unread request body this small is read and dropped to keep the connection; larger closes it. */
const MAX_DRAIN = 64 * 1024;
/** A closing connection whose peer does not close in this time is destroyed. */
const LINGER_MS = 2000;
/**
 * A closing connection's peer may send this much more (the rest of a refused body), read and
 * dropped, before its reads stop: enough for a client that sent a little too much (Go reads 256 KiB
 * after a handler that did not read the body), never a flood read at full speed.
 */
const MAX_LINGER_BYTES = 256 * 1024;
const DEFAULT_MAX_PIPELINED_REQUESTS = 32;

const HEAD = 0, BODY = 1, RESPONDING = 2, CLOSING = 3, UPGRADED = 4, CLOSED = 5;

/** One served connection. Start it with `serveConnection`. */
class Connection implements ResponseSink {
  state = HEAD;
  /** performance.now() after which the connection is timed out (0: none). */
  deadline = 0;
  /** The deadline is the header timeout (else the idle timeout or linger). */
  headerDeadline = false;
  private parser: RequestHeadParser;
  private pending: Uint8Array | undefined;
  private req: ServerRequest | undefined;
  private res: ServerResponse | undefined;
  private head: RequestHead | undefined;
  private decoder: BodyDecoder | undefined;
  private bodyBytes = 0;
  private readonly gate: ReadGate;
  /** Requests in a row that arrived before the previous answer went out. */
  private pipelined = 0;
  /** Bytes read and dropped while closing. */
  private lingered = 0;
  /** performance.now() of the head, and of the last body byte. */
  private bodyStart = 0;
  private bodyLast = 0;
  /** Request-body bytes this connection holds in the shared budget. */
  private held = 0;
  private proven = false;
  private sent100 = false;
  private discard = false;
  private responseDone = false;
  private closeAfter = false;
  /** Inside the parse loop (a response may finish synchronously in the handler it calls). */
  private processing = false;
  /** Body bytes dropped after the response finished. */
  private dropped = 0;
  private readonly onData = (chunk: Uint8Array) => this.data(chunk);

  constructor(private socket: Duplex, private opts: ConnectionOptions) {
    this.parser = new RequestHeadParser(opts.limits);
    this.gate = readGate(socket);
    socket.on("data", this.onData);
    socket.on("error", () => {});
    socket.on("close", () => this.closed());
    this.expectHead(true);
  }

  private expectHead(first: boolean): void {
    this.state = HEAD;
    this.req =
      this.res =
      this.head =
      this.decoder =
        undefined;
    this.release();
    this.bodyBytes = this.dropped = 0;
    this.sent100 = this.discard = this.responseDone = false;
    // The first request's head is timed from the connection, the next ones from their first byte.
    this.headerDeadline = first;
    this.deadline = performance.now() + (first ? this.opts.headerTimeoutMs : this.opts.idleTimeoutMs);
    this.opts.deadlines.register(this);
  }

  private data(chunk: Uint8Array): void {
    try {
      this.receive(chunk);
    } catch (e) {
      // A bug of ours or a handler's listener threw: this connection cannot be trusted any more.
      this.opts.onError?.(`internal error: ${(e as Error).message}`, 500);
      this.socket.destroy();
    }
  }

  private receive(chunk: Uint8Array): void {
    if (this.state === RESPONDING || this.state === CLOSING) {
      // Pipelined or lingering bytes: garbage soon (reclaim.ts counts them).
      passed(chunk.length);
      if (this.state === CLOSING) {
        this.lingered += chunk.length;
        // Past the allowance: stop reading (the client's writes block) rather than reset at once,
        // which would discard our answer from a client that has not read it yet; the linger
        // deadline destroys the connection if the client does not close.
        if (this.lingered > MAX_LINGER_BYTES) this.gate.stop();
        return;
      }
      this.pending = this.pending ? join(this.pending, chunk) : chunk;
      if (this.pending.length > MAX_PIPELINED) this.pause();
      return;
    }
    if (this.state === HEAD && !this.headerDeadline) {
      this.headerDeadline = true;
      this.deadline = performance.now() + this.opts.headerTimeoutMs;
    }
    this.process(chunk, 0);
  }

  /** Runs the parse loop over `buf[pos..]` until it needs more bytes or must wait. */
  private process(buf: Uint8Array, pos: number): void {
    this.processing = true;
    try {
      this.parse(buf, pos);
    } finally {
      this.processing = false;
    }
    if (this.state === BODY && this.responseDone) this.drainOrClose();
    // A head begun in bytes that came with the previous request is timed like any other.
    if (this.state === HEAD && !this.headerDeadline && this.parser.started) {
      this.headerDeadline = true;
      this.deadline = performance.now() + this.opts.headerTimeoutMs;
    }
  }

  private parse(buf: Uint8Array, pos: number): void {
    while (pos < buf.length || (this.state === BODY && this.decoder?.done)) {
      if (this.state === HEAD) {
        const r = this.parser.feed(buf, pos);
        if (r instanceof HttpError) return this.fail(r);
        if (r === NEED_MORE) return;
        pos = r;
        if (!this.begin(this.parser.head!, buf, pos)) return;
      } else if (this.state === BODY) {
        if (this.decoder!.done) {
          this.bodyDone();
          continue;
        }
        const r = this.decoder!.feed(buf, pos);
        if (r instanceof HttpError) return this.bodyError(r);
        if (this.bodyBytes > this.opts.maxRequestBodyBytes) {
          return this.bodyError(tooLarge(this.opts.maxRequestBodyBytes));
        }
        pos = r;
        if (this.state !== BODY) return;
      } else {
        // A response is in progress: keep the rest for later.
        if (this.state === RESPONDING) {
          const rest = buf.subarray(pos);
          this.pending = this.pending ? join(this.pending, rest) : rest;
          if (this.pending.length > MAX_PIPELINED) this.pause();
        }
        return;
      }
    }
  }

  /** A head arrived. Returns false when the connection stops parsing (upgrade, error). */
  private begin(head: RequestHead, buf: Uint8Array, pos: number): boolean {
    this.deadline = 0;
    this.head = head;
    if (head.upgrade) {
      this.state = UPGRADED;
      this.opts.deadlines.unregister(this);
      this.socket.off("data", this.onData);
      // The handler reads the socket from now on (its pause/resume are its own).
      this.gate.start();
      this.socket.pause();
      const req = new ServerRequest(head, this.socket, { pull() {} });
      req.finishBody();
      const rest = buf.slice(pos);
      this.guard(() => this.opts.onUpgrade(req, this.socket, rest), undefined);
      return false;
    }
    if (head.body === "length" && head.contentLength > this.opts.maxRequestBodyBytes) {
      this.fail(tooLarge(this.opts.maxRequestBodyBytes));
      return false;
    }
    const req = new ServerRequest(head, this.socket, { pull: () => this.pull() });
    const res = new ServerResponse(this, head, this.socket);
    this.req = req;
    this.res = res;
    if (head.body === "none") {
      req.finishBody();
      this.state = RESPONDING;
    } else {
      this.state = BODY;
      this.bodyStart = this.bodyLast = performance.now();
      this.bodyDeadline();
      req.once("end", () => this.release());
      req.once("close", () => this.release());
      const onBody = (c: Uint8Array) => this.body(c);
      this.decoder = head.body === "length"
        ? new LengthDecoder(head.contentLength, onBody)
        : new ChunkedDecoder(onBody);
    }
    this.guard(() => this.opts.onRequest(req, res), res);
    // The handler may have answered and finished synchronously; bytes after the head go on.
    if (this.state === RESPONDING && pos < buf.length) {
      const rest = buf.subarray(pos);
      this.pending = this.pending ? join(this.pending, rest) : rest;
      if (this.pending.length > MAX_PIPELINED) this.pause();
      return false;
    }
    return this.state === BODY || this.state === HEAD;
  }

  private guard(fn: () => void, res: ServerResponse | undefined): void {
    try {
      fn();
    } catch (e) {
      const message = `internal error: ${(e as Error).message}`;
      this.opts.onError?.(message, 500);
      if (res && !res.headersSent && !res.destroyed) this.answer(res, 500, message);
      else if (res) res.destroy();
      else this.socket.destroy();
    }
  }

  private body(chunk: Uint8Array): void {
    this.bodyBytes += chunk.length;
    // Body bytes are garbage once forwarded: reclaim.ts collects after bulk (a flood of bodies).
    passed(chunk.length);
    this.bodyLast = performance.now();
    this.bodyDeadline();
    if (this.discard) this.dropped += chunk.length;
    if (this.bodyBytes > this.opts.maxRequestBodyBytes || this.discard || this.req!.destroyed) return;
    // A chunked body is read on up to the body limit even when its reader is slow, so that it
    // meets its 413 at the limit also when the cloud is black-holed (README); the shared budget
    // bounds what all read-on bodies hold together (over it: 503). A Content-Length body (its
    // length checked first) stops being read while its reader is slow: the read gate stops the
    // TCP reads, which `pause()` alone does not on Deno's TLS sockets.
    const more = this.req!.push(chunk);
    if (!this.account()) {
      this.release();
      return this.bodyError(
        new HttpError(503, "the request bodies in flight exceed this server's memory budget: retry later"),
      );
    }
    if (!more && this.head!.body !== "chunked") this.pause();
  }

  /** Brings this request's share of the body budget up to what its stream holds; false: over. */
  private account(): boolean {
    const budget = this.opts.bodyBudget;
    if (!budget) return true;
    const now = this.req && !this.req.destroyed ? this.req.readableLength : 0;
    const ok = budget.adjust(now - this.held);
    this.held = now;
    return ok;
  }

  private release(): void {
    if (this.held) this.opts.bodyBudget?.adjust(-this.held);
    this.held = 0;
  }

  /**
   * The body's deadline: its whole time, and the silence between bytes while we read (a body we
   * stopped reading because its reader is slow is not the client's silence).
   */
  private bodyDeadline(): void {
    if (this.state !== BODY) return;
    const total = this.opts.bodyTimeoutMs ? this.bodyStart + this.opts.bodyTimeoutMs : Infinity;
    const idle = this.opts.bodyIdleTimeoutMs && !this.gate.stopped
      ? this.bodyLast + this.opts.bodyIdleTimeoutMs
      : Infinity;
    const at = Math.min(total, idle);
    this.deadline = at === Infinity ? 0 : at;
    this.headerDeadline = false;
    if (this.deadline) this.opts.deadlines.register(this);
  }

  private bodyDone(): void {
    if (!this.discard) this.req!.finishBody();
    this.deadline = 0;
    this.state = RESPONDING;
    this.decoder = undefined;
    if (this.responseDone) this.next();
  }

  private bodyError(err: HttpError): void {
    this.req?.abort(err);
    this.release();
    const res = this.res!;
    if (res.takeOver()) {
      this.closeAfter = true;
      this.errorAnswer(err.status, err.message, err.status === 503 ? "Retry-After: 1\r\n" : "");
    } else this.socket.destroy();
    this.opts.onError?.(err.message, err.status);
  }

  /** The reader of the body wants more. */
  private pull(): void {
    if (this.head?.expectContinue && !this.sent100 && this.state === BODY && !this.res?.headersSent) {
      this.sent100 = true;
      this.socket.write("HTTP/1.1 100 Continue\r\n\r\n");
    }
    this.account();
    this.resume();
  }

  private pause(): void {
    if (this.gate.stopped) return;
    this.gate.stop();
    this.bodyDeadline();
  }

  private resume(): void {
    if (!this.gate.stopped) return;
    this.gate.start();
    if (this.state === BODY) this.bodyLast = performance.now();
    this.bodyDeadline();
  }

  // ResponseSink

  send(bytes: Uint8Array, done: () => void): void {
    if (this.socket.destroyed || !this.socket.writable) return done();
    if (this.socket.write(bytes)) done();
    else this.socket.once("drain", done);
  }

  finished(reusable: boolean, close: boolean): void {
    if (this.state === CLOSED || this.state === CLOSING) return;
    if (!this.proven && this.head?.headers.authorization !== undefined) {
      const status = this.res?.statusCode ?? 0;
      if (status >= 200 && status < 400) {
        this.proven = true;
        this.opts.onProven?.();
      }
    }
    if (!reusable) {
      this.socket.destroy();
      return;
    }
    if (close || this.closeAfter) return this.linger();
    this.responseDone = true;
    if (this.state === BODY) {
      // Answered before the body was read: the rest of it is dropped as it arrives.
      this.discard = true;
      this.req!.abort();
      if (!this.processing) this.drainOrClose();
      return;
    }
    if (this.state === RESPONDING) this.next();
  }

  /**
   * The answer went out but the body is still arriving: read and drop a small rest to keep the
   * connection, else close it (RFC 9112 §9.3). A client still waiting for 100 Continue may or may
   * not send its body: only closing is unambiguous.
   */
  private drainOrClose(): void {
    const left = this.decoder instanceof LengthDecoder ? this.decoder.left : 0;
    if (left > MAX_DRAIN || this.dropped > MAX_DRAIN || (this.head!.expectContinue && !this.sent100)) {
      return this.linger();
    }
    this.resume();
  }

  abort(): void {
    this.socket.destroy();
  }

  /** The exchange is over: go on with the next request (already buffered bytes first). */
  private next(): void {
    this.expectHead(false);
    const buf = this.pending;
    this.pending = undefined;
    // Bytes of the next request came before this answer went out: pipelining. A client that never
    // reads its answers would otherwise have us forward requests for as long as the kernel takes
    // our answers; past the bound the connection is closed and the rest goes unanswered.
    this.pipelined = buf ? this.pipelined + 1 : 0;
    if (this.pipelined > (this.opts.maxPipelinedRequests ?? DEFAULT_MAX_PIPELINED_REQUESTS)) {
      this.opts.onError?.("too many pipelined requests: connection closed", 429);
      return this.linger();
    }
    this.resume();
    if (buf) {
      // Not from inside the handler's end() call: a fresh turn for the next exchange.
      queueMicrotask(() => {
        if (this.state === HEAD) this.process(buf, 0);
      });
    }
  }

  /** Answers a protocol error when no response is in progress, then closes. */
  private fail(err: HttpError): void {
    this.opts.onError?.(err.message, err.status);
    this.errorAnswer(err.status, err.message);
  }

  private errorAnswer(status: number, message: string, extraHeaders = ""): void {
    const { contentType, body } = this.opts.errorBody(status, message);
    const bytes = new TextEncoder().encode(body);
    this.socket.write(
      `HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Type: ${contentType}\r\n` +
        `Content-Length: ${bytes.length}\r\nCache-Control: no-cache, private\r\n${extraHeaders}` +
        "Connection: close\r\n\r\n",
    );
    this.socket.write(bytes);
    this.linger();
  }

  private answer(res: ServerResponse, status: number, message: string): void {
    const { contentType, body } = this.opts.errorBody(status, message);
    res.writeHead(status, { "content-type": contentType, "cache-control": "no-cache, private" });
    res.end(body);
  }

  /** Stops reading requests, ends the connection, and destroys it if the peer does not close. */
  private linger(): void {
    if (this.state === CLOSED || this.state === CLOSING) return;
    this.state = CLOSING;
    this.socket.end();
    // Keep reading (and dropping) what the client still sends, so that closing does not reset the
    // connection before it has read our answer.
    this.resume();
    this.deadline = performance.now() + LINGER_MS;
    this.headerDeadline = false;
    this.opts.deadlines.register(this);
  }

  busy(): boolean {
    return this.state !== HEAD || this.parser.started;
  }

  /** Called by the sweep when the deadline passed. */
  expire(): void {
    if (this.state === BODY) {
      const whole = this.opts.bodyTimeoutMs && performance.now() >= this.bodyStart + this.opts.bodyTimeoutMs;
      const message = whole
        ? `the request body did not arrive within ${this.opts.bodyTimeoutMs}ms`
        : `no request body bytes for ${this.opts.bodyIdleTimeoutMs}ms`;
      if (this.responseDone) {
        this.socket.destroy();
        return;
      }
      return this.bodyError(new HttpError(408, message));
    }
    // A head that started gets its 408; a connection that sent nothing is closed without a word
    // (an unsolicited answer on an idle connection confuses clients that reuse it).
    if (this.state === HEAD && this.headerDeadline && this.parser.started) {
      this.opts.onError?.("request header timeout", 408);
      this.errorAnswer(408, `the request head did not arrive within ${this.opts.headerTimeoutMs}ms`);
    } else this.socket.destroy();
  }

  private closed(): void {
    this.state = CLOSED;
    this.opts.deadlines.unregister(this);
    this.release();
    this.pending = undefined;
    this.req?.abort();
    if (this.res && !this.res.writableFinished) this.res.destroy();
  }
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, `Request entity too large: limit is ${limit}`);
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The deadlines of one server's connections, checked by one sweep of its timer service at a tenth of
 * the shortest timeout (at most once a second, at least every 50 ms). Made once per server.
 */
export function connectionDeadlines(
  timers: Timers,
  opts: Pick<ConnectionOptions, "headerTimeoutMs" | "idleTimeoutMs" | "bodyIdleTimeoutMs" | "bodyTimeoutMs">,
): DeadlineSet<Expiring> {
  const shortest = Math.min(
    opts.headerTimeoutMs,
    opts.idleTimeoutMs,
    opts.bodyIdleTimeoutMs || Infinity,
    opts.bodyTimeoutMs || Infinity,
  );
  return new DeadlineSet(timers, Math.max(50, Math.min(1000, Math.floor(shortest / 10))));
}

/** Serves HTTP/1.1 on `socket` until it closes or is upgraded. */
export function serveConnection(socket: Duplex, opts: ConnectionOptions): ServedConnection {
  return new Connection(socket, opts);
}
