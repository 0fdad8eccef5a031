/**
 * A keep-alive connection pool for one upstream credential (a client pair, or none), with one set
 * of connections per endpoint. Idle connections are reused last-in first-out, expire after
 * `idleMs`, and at most `maxSockets` are open per endpoint (further requests wait their turn).
 * The keep-alive race is handled: a request that fails on a reused connection before any response
 * byte arrived (the server closed it while idle) is sent once more on a fresh connection when it is
 * replayable (GET, HEAD, OPTIONS, with no streamed body), as Go's transport does.
 */
import type { TLSSocket } from "node:tls";
import type { Endpoint } from "./endpoint.ts";
import { type Dial, type Dialing, makeDial } from "./https_proxy.ts";
import { type ExchangeHandlers, type RequestSpec, UpstreamConnection } from "./connection.ts";
import type { UpstreamResponse } from "./response.ts";
import type { ResponseHead } from "../http/head_parser.ts";
import { H2Connection, type H2Options } from "./h2/connection.ts";
import { LiteError, withCode } from "../errors.ts";
import { type Sweep, Timers } from "../timers.ts";

export interface PoolOptions {
  ca: string;
  cert?: string;
  key?: string;
  /** Open connections per endpoint, busy or idle (watches hold one each). */
  maxSockets?: number;
  /** Idle connections kept per endpoint. */
  maxIdle?: number;
  /** An idle connection is closed after this long. */
  idleMs?: number;
  /** How connections are opened (direct or through HTTPS_PROXY); replaceable in tests. */
  dial?: Dial;
  /** "auto": offer h2 by ALPN and multiplex when the server picks it; "off": HTTP/1.1 only. */
  http2?: "auto" | "off";
  /** HTTP/2 connection tuning (PING health check, windows); tests shorten the timers. */
  h2?: H2Options;
  /** The server's timer service, which sweeps idle connections (default: the pool's own). */
  timers?: Timers;
}

/** One request in flight: its answer, and a way to give up on it (closes its connection). */
export interface UpstreamCall {
  response: Promise<UpstreamResponse>;
  abort(): void;
}

/** A protocol switch that the upstream accepted, or its refusal as an ordinary answer. */
export type UpgradeResult =
  | { kind: "upgraded"; head: ResponseHead; socket: TLSSocket; rest: Uint8Array }
  | { kind: "answered"; response: UpstreamResponse };

const REPLAYABLE = new Set(["GET", "HEAD", "OPTIONS"]);

interface Waiter {
  take(conn: UpstreamConnection | undefined): void;
}

/** A request waiting for room on an HTTP/2 connection. */
interface H2Waiter {
  got(c: H2Connection): void;
  /** ALPN chose HTTP/1.1 at this endpoint: go the HTTP/1.1 way. */
  fallback(): void;
  failed(err: Error): void;
}

/** The connections to one endpoint. */
class HostConnections {
  idle: UpstreamConnection[] = [];
  all = new Set<UpstreamConnection>();
  /** Open or opening connections, busy or idle. */
  open = 0;
  waiting: Waiter[] = [];
  /** HTTP/2 connections (open slots are counted in `open` too). */
  h2 = new Set<H2Connection>();
  h2Waiting: H2Waiter[] = [];
  /** The HTTP/2 connection being opened (one at a time). */
  h2Dial?: Dialing;
  /** ALPN chose HTTP/1.1 here: this pool uses HTTP/1.1 for this endpoint from now on. */
  h1Only = false;
}

export class UpstreamPool {
  readonly options: Required<Omit<PoolOptions, "cert" | "key" | "h2" | "timers">> & {
    cert?: string;
    key?: string;
    h2?: H2Options;
  };
  #hosts = new Map<string, HostConnections>();
  #timers: Timers;
  /** The pool made its timer service (none was given): it closes it when destroyed. */
  #ownTimers: boolean;
  /** Closes connections idle longer than idleMs; runs while any connection is idle. */
  #idleSweep: Sweep;
  #destroyed = false;
  #retiring = false;
  /** Connections opened, for tests and metrics. */
  dialed = 0;

  constructor(opts: PoolOptions) {
    this.options = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      maxSockets: opts.maxSockets ?? 256,
      maxIdle: opts.maxIdle ?? 32,
      idleMs: opts.idleMs ?? 30_000,
      dial: opts.dial ?? makeDial(),
      http2: opts.http2 ?? "off",
      h2: opts.h2,
    };
    this.#ownTimers = !opts.timers;
    this.#timers = opts.timers ?? new Timers();
    this.#idleSweep = {
      periodMs: Math.max(50, Math.min(5_000, this.options.idleMs / 2)),
      // Idle connections must not keep the process alive.
      keepAlive: false,
      run: (now) => this.#sweepIdle(now),
    };
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Connections open to any endpoint (busy or idle). */
  get openConnections(): number {
    let n = 0;
    for (const h of this.#hosts.values()) n += h.open;
    return n;
  }

  /**
   * Sends a request; the response resolves once its head has arrived. `events.connected` runs when
   * the request has a connection (a reused one, or a fresh one whose TLS handshake completed).
   */
  request(ep: Endpoint, spec: RequestSpec, events?: { connected?(): void }): UpstreamCall {
    if (this.options.http2 === "auto" && !spec.upgrade && !this.#host(ep).h1Only) {
      return this.#requestH2(ep, spec, events);
    }
    return this.#requestH1(ep, spec, events);
  }

  #requestH1(ep: Endpoint, spec: RequestSpec, events?: { connected?(): void }): UpstreamCall {
    let conn: UpstreamConnection | undefined;
    let dialing: Dialing | undefined;
    let aborted = false;
    let waiter: Waiter | undefined;
    let answer: UpstreamResponse | undefined;
    const replayable = REPLAYABLE.has(spec.method) && !spec.stream;
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      const handlers = (reused: boolean): ExchangeHandlers => ({
        response: (res) => {
          answer = res;
          resolve(res);
        },
        released: () => (conn = undefined),
        error: (err, gotBytes) => {
          conn = undefined;
          if (reused && !gotBytes && replayable && !aborted && !this.#destroyed) return attempt(true);
          reject(err);
        },
      });
      const attempt = (fresh: boolean) => {
        this.#acquire(ep, fresh, {
          onDialing: (d) => (dialing = d),
          onWaiting: (w) => (waiter = w),
          got: (c, reused) => {
            dialing = undefined;
            waiter = undefined;
            if (aborted) return this.#release(ep, c);
            conn = c;
            events?.connected?.();
            try {
              c.send(spec, handlers(reused));
            } catch (e) {
              conn = undefined;
              c.destroy();
              reject(e);
            }
          },
          failed: (err) => {
            dialing = undefined;
            reject(err);
          },
        });
      };
      attempt(false);
    });
    // A caller that has given up (client gone, deadline passed) may never await the answer: its
    // rejection must not count as unhandled (Deno ends the process on one). Awaiting callers still see it.
    response.catch(() => {});
    return {
      response,
      abort: () => {
        aborted = true;
        dialing?.cancel();
        if (waiter) this.#unwait(ep, waiter);
        // Once the exchange is over the connection is back in the pool (`released` cleared it).
        conn?.destroy();
        answer?.destroy();
      },
    };
  }

  /** Opens a fresh connection for a protocol switch; it leaves the pool once upgraded. */
  upgrade(ep: Endpoint, spec: RequestSpec): { result: Promise<UpgradeResult>; abort(): void } {
    let conn: UpstreamConnection | undefined;
    let dialing: Dialing | undefined;
    let aborted = false;
    const result = new Promise<UpgradeResult>((resolve, reject) => {
      dialing = this.#dialOne(ep, (err, c) => {
        dialing = undefined;
        if (err || !c) return reject(err);
        if (aborted) return c.destroy();
        conn = c;
        c.onReusable = (x) => x.destroy();
        c.send({ ...spec, upgrade: true }, {
          response: (response) => resolve({ kind: "answered", response }),
          upgrade: (head, socket, rest) => resolve({ kind: "upgraded", head, socket, rest }),
          error: (e) => reject(e),
        });
      });
    });
    return {
      result,
      abort: () => {
        aborted = true;
        dialing?.cancel();
        conn?.destroy();
      },
    };
  }

  #host(ep: Endpoint): HostConnections {
    let h = this.#hosts.get(ep.key);
    if (!h) {
      h = new HostConnections();
      this.#hosts.set(ep.key, h);
    }
    return h;
  }

  #acquire(
    ep: Endpoint,
    fresh: boolean,
    cb: {
      onDialing(d: Dialing): void;
      onWaiting(w: Waiter): void;
      got(c: UpstreamConnection, reused: boolean): void;
      failed(err: Error): void;
    },
  ) {
    if (this.#destroyed) {
      return cb.failed(new LiteError("ECANCELED", "connection pool retired"));
    }
    const h = this.#host(ep);
    if (!fresh) {
      let c: UpstreamConnection | undefined;
      while ((c = h.idle.pop())) {
        if (!c.closed) return cb.got(c, true);
      }
    }
    const open = () => {
      if (this.#destroyed) {
        return cb.failed(new LiteError("ECANCELED", "connection pool retired"));
      }
      cb.onDialing(this.#dialOne(ep, (err, c) => err || !c ? cb.failed(err!) : cb.got(c, false)));
    };
    if (h.open < this.options.maxSockets || fresh) return open();
    const w: Waiter = {
      take: (c) => c ? cb.got(c, true) : open(),
    };
    h.waiting.push(w);
    cb.onWaiting(w);
  }

  #unwait(ep: Endpoint, w: Waiter) {
    const h = this.#hosts.get(ep.key);
    if (!h) return;
    const i = h.waiting.indexOf(w);
    if (i >= 0) h.waiting.splice(i, 1);
  }

  #dialOne(ep: Endpoint, done: (err: Error | undefined, c?: UpstreamConnection) => void): Dialing {
    const h = this.#host(ep);
    h.open++;
    this.dialed++;
    const d = this.options.dial({
      host: ep.hostname,
      port: ep.port,
      servername: ep.servername,
      ca: this.options.ca,
      cert: this.options.cert,
      key: this.options.key,
    });
    d.ready.then(
      (socket) => {
        if (this.#destroyed) {
          socket.destroy();
          this.#closed(ep, h);
          return done(new LiteError("ECANCELED", "connection pool retired"));
        }
        const c = new UpstreamConnection(socket);
        h.all.add(c);
        c.onReusable = (x) => this.#release(ep, x);
        c.onClosed = (x) => this.#forget(ep, h, x);
        done(undefined, c);
      },
      (err) => {
        this.#closed(ep, h);
        done(withCode(err));
      },
    );
    return d;
  }

  /** A connection finished an exchange: to the next waiter, or idle. */
  #release(ep: Endpoint, c: UpstreamConnection) {
    const h = this.#host(ep);
    if (this.#destroyed || this.#retiring || c.closed) return c.destroy();
    const w = h.waiting.shift();
    if (w) return w.take(c);
    if (h.idle.length >= this.options.maxIdle) return c.destroy();
    h.idle.push(c);
    this.#startSweep();
  }

  #forget(ep: Endpoint, h: HostConnections, c: UpstreamConnection) {
    const i = h.idle.indexOf(c);
    if (i >= 0) h.idle.splice(i, 1);
    h.all.delete(c);
    this.#closed(ep, h);
  }

  /** A connection slot is free: a waiter may open one. */
  #closed(ep: Endpoint, h: HostConnections) {
    h.open--;
    if (this.#destroyed) return;
    const w = h.waiting.shift();
    if (w) w.take(undefined);
    else if (h.h2Waiting.length) this.#serveH2(ep, h);
  }

  #startSweep() {
    this.#timers.start(this.#idleSweep);
  }

  #sweepIdle(now: number): boolean {
    const cutoff = now - this.options.idleMs;
    let any = false;
    for (const h of this.#hosts.values()) {
      for (const c of [...h.idle]) if (c.idleSince <= cutoff) c.destroy();
      if (h.idle.length) any = true;
    }
    return any;
  }

  /**
   * Stops reusing connections (a rotated credential): idle ones close now, busy ones when their
   * exchange ends. Requests still sent on this pool get fresh connections.
   */
  retire(): void {
    this.#retiring = true;
    for (const h of this.#hosts.values()) {
      for (const c of h.idle.splice(0)) c.destroy();
      for (const c of h.h2) c.goaway();
    }
  }

  /** Exchanges still running on this pool's connections. */
  get busyConnections(): number {
    let n = 0;
    for (const h of this.#hosts.values()) {
      n += h.all.size - h.idle.length;
      for (const c of h.h2) if (c.streams > 0) n++;
    }
    return n;
  }

  /** Closes every connection, busy ones included; later requests fail. */
  destroy(): void {
    this.#destroyed = true;
    this.#timers.stop(this.#idleSweep);
    if (this.#ownTimers) this.#timers.close();
    for (const h of this.#hosts.values()) {
      for (const w of h.waiting.splice(0)) w.take(undefined);
      h.idle.length = 0;
      for (const c of [...h.all]) c.destroy();
      const err = new LiteError("ECANCELED", "connection pool retired");
      for (const w of h.h2Waiting.splice(0)) w.failed(err);
      h.h2Dial?.cancel();
      for (const c of [...h.h2]) c.destroy(err);
    }
  }

  // --- HTTP/2: one multiplexed connection per endpoint for this credential ---

  /** HTTP/2 connections open to any endpoint. */
  get h2Connections(): number {
    let n = 0;
    for (const h of this.#hosts.values()) n += h.h2.size;
    return n;
  }

  /**
   * A request as a stream on this credential's HTTP/2 connection. The first request to an
   * endpoint dials with ALPN h2,http/1.1; if the server picks HTTP/1.1 the request (and all later
   * ones) take the HTTP/1.1 path. A stream the server never processed (REFUSED_STREAM, above a
   * GOAWAY's last-stream-id) is sent once more; so is a replayable request whose connection died
   * before any answer (the keep-alive race of HTTP/1.1).
   */
  #requestH2(ep: Endpoint, spec: RequestSpec, events?: { connected?(): void }): UpstreamCall {
    let stream: { cancel(): void } | undefined;
    let inner: UpstreamCall | undefined;
    let waiter: H2Waiter | undefined;
    let aborted = false;
    let retried = false;
    let answer: UpstreamResponse | undefined;
    const replayable = REPLAYABLE.has(spec.method) && !spec.stream;
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      const attempt = () => {
        const w: H2Waiter = {
          got: (c) => {
            waiter = undefined;
            if (aborted) return;
            const reused = c.opened > 0;
            events?.connected?.();
            try {
              stream = c.request(spec, {
                response: (res) => {
                  answer = res;
                  resolve(res);
                },
                released: () => (stream = undefined),
                error: (err, gotBytes) => {
                  stream = undefined;
                  const refused = (err as { retryable?: boolean }).retryable === true;
                  const again = refused || (reused && !gotBytes && replayable);
                  if (again && !retried && !aborted && !this.#destroyed) {
                    retried = true;
                    return attempt();
                  }
                  reject(err);
                },
              });
            } catch (e) {
              return reject(e);
            }
            // A retired pool: this connection takes no stream after this one.
            if (this.#retiring) c.goaway();
          },
          fallback: () => {
            waiter = undefined;
            if (aborted) return;
            inner = this.#requestH1(ep, spec, events);
            inner.response.then(resolve, reject);
          },
          failed: (err) => {
            waiter = undefined;
            reject(err);
          },
        };
        waiter = w;
        this.#acquireH2(ep, w);
      };
      attempt();
    });
    return {
      response,
      abort: () => {
        aborted = true;
        if (waiter) {
          const h = this.#hosts.get(ep.key);
          const i = h ? h.h2Waiting.indexOf(waiter) : -1;
          if (i >= 0) h!.h2Waiting.splice(i, 1);
        }
        // Only this stream ends: the connection carries other callers' streams.
        stream?.cancel();
        inner?.abort();
        answer?.destroy();
      },
    };
  }

  #acquireH2(ep: Endpoint, w: H2Waiter) {
    if (this.#destroyed) {
      return w.failed(new LiteError("ECANCELED", "connection pool retired"));
    }
    const h = this.#host(ep);
    if (h.h1Only) return w.fallback();
    for (const c of h.h2) if (c.capacity > 0) return w.got(c);
    h.h2Waiting.push(w);
    this.#serveH2(ep, h);
  }

  /** Hands waiting requests to connections with room; opens another connection when none has. */
  #serveH2(ep: Endpoint, h: HostConnections) {
    while (h.h2Waiting.length) {
      if (h.h1Only) {
        for (const w of h.h2Waiting.splice(0)) w.fallback();
        return;
      }
      let room: H2Connection | undefined;
      for (const c of h.h2) {
        if (c.capacity > 0) {
          room = c;
          break;
        }
      }
      if (!room) break;
      h.h2Waiting.shift()!.got(room);
    }
    if (h.h2Waiting.length && !h.h2Dial && h.open < this.options.maxSockets && !this.#destroyed) {
      this.#dialH2(ep, h);
    }
  }

  #dialH2(ep: Endpoint, h: HostConnections) {
    h.open++;
    this.dialed++;
    const d = this.options.dial({
      host: ep.hostname,
      port: ep.port,
      servername: ep.servername,
      ca: this.options.ca,
      cert: this.options.cert,
      key: this.options.key,
      alpn: ["h2", "http/1.1"],
    });
    h.h2Dial = d;
    const failAll = (err: Error) => {
      for (const w of h.h2Waiting.splice(0)) w.failed(err);
    };
    d.ready.then(
      (socket) => {
        h.h2Dial = undefined;
        if (this.#destroyed) {
          socket.destroy();
          this.#closed(ep, h);
          return;
        }
        if (socket.alpnProtocol !== "h2") {
          h.h1Only = true;
          this.#adoptH1(ep, h, socket);
          return this.#serveH2(ep, h);
        }
        const c = new H2Connection(socket, { idleMs: this.options.idleMs, ...this.options.h2 });
        h.h2.add(c);
        c.onCapacity = () => this.#serveH2(ep, h);
        c.onClosed = () => {
          h.h2.delete(c);
          this.#closed(ep, h);
        };
        c.ready.then(
          () => this.#serveH2(ep, h),
          (err) => failAll(err),
        );
      },
      (err) => {
        h.h2Dial = undefined;
        this.#closed(ep, h);
        failAll(withCode(err));
      },
    );
  }

  /** A connection dialed for HTTP/2 on which the server chose HTTP/1.1 joins the HTTP/1.1 pool. */
  #adoptH1(ep: Endpoint, h: HostConnections, socket: TLSSocket) {
    const c = new UpstreamConnection(socket);
    h.all.add(c);
    c.onReusable = (x) => this.#release(ep, x);
    c.onClosed = (x) => this.#forget(ep, h, x);
    this.#release(ep, c);
  }
}
