/**
 * The local HTTPS listener: `node:tls` with our own HTTP/1.1 layer (lib/http) above it (Deno's
 * `node:https` server stalls keep-alive connections; see DESIGN.md). Client certificates are
 * requested but optional, and verified against the cluster CA; what a connection's certificate
 * proves is read once per TLS connection. Every accepted TCP connection holds a seat (lib/listener/
 * seats.ts) from accept to close; the TLS handshake is timed; unprivileged connections give their
 * seat back first; when every seat is held by verified clients a new connection gets a 503. An
 * accept loop that stopped on EMFILE is restarted (see `AcceptWatchdog`).
 */
import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import { ConfigError } from "../config/errors.ts";
import { log } from "../log.ts";
import type { Socket } from "node:net";
import {
  connectionDeadlines,
  type ConnectionOptions,
  serveConnection,
  type ServedConnection,
} from "../http/server_connection.ts";
import type { Timers } from "../timers.ts";
import { BodyBudget } from "../http/body_budget.ts";
import { connectionClosed } from "../http/reclaim.ts";
import { type Seat, Seats } from "./seats.ts";
import { AcceptWatchdog } from "./accept_watchdog.ts";
import { statusText } from "../http/status_text.ts";
import { clientCertFailure } from "../certs/client_cert_check.ts";
import { serveH2Stream } from "./h2_serve.ts";

export { DEFAULT_HTTP_LIMITS } from "./listener_types.ts";
export type { HttpLimits, ListenerHandlers, Peer, ServingContext } from "./listener_types.ts";
import {
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
  type ListenerHandlers,
  type Peer,
  type ServingContext,
} from "./listener_types.ts";

export interface Listener {
  /** Bound addresses as host:port. */
  addresses: string[];
  port: number;
  setSecureContext(ctx: ServingContext): void;
  close(): Promise<void>;
}

const ANONYMOUS_PEER: Peer = { presented: false, verified: false, cn: "", groups: [], serial: "" };

function asArray(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function readPeer(socket: TLSSocket): Peer {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return ANONYMOUS_PEER;
  const subject = cert.subject ?? {};
  return {
    presented: true,
    verified: socket.authorized === true,
    cn: asArray(subject.CN as string | string[] | undefined)[0] ?? "",
    groups: asArray(subject.O as string | string[] | undefined),
    serial: String(cert.serialNumber ?? "").toUpperCase(),
    error: socket.authorized ? undefined : String(socket.authorizationError ?? "unverified"),
  };
}

/** The one place an unverified client certificate is reported. */
function reportUnverified(peer: Peer, socket: TLSSocket, caPem: string): void {
  log.warn("client certificate did not verify: treating the connection as anonymous", {
    cn: peer.cn,
    // security (issue 10): the real reason, not the TLS layer's one code for every failure.
    reason: clientCertFailure(socket.getPeerCertificate().raw, caPem) ?? peer.error,
    remote: socket.remoteAddress,
  }, "tls.client-cert-unverified");
}

function listenOn(server: tls.Server, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      if (err.code === "EADDRINUSE") {
        reject(new ConfigError(`--port ${port}: address ${address}:${port} is already in use`));
      } else if (err.code === "EADDRNOTAVAIL") {
        reject(new ConfigError(`--address ${address}: not an address of this host`));
      } else if (err.code === "EACCES") {
        reject(new ConfigError(`--port ${port}: permission denied on ${address}`));
      } else reject(new ConfigError(`cannot listen on ${address}:${port}: ${err.message}`));
    };
    const onListening = () => {
      server.off("error", onError);
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : port);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, address);
  });
}

/** A refused connection may send this much before it is cut. */
const REFUSAL_DRAIN_BYTES = 64 * 1024;

interface ListenerSeat extends Seat {
  tls?: TLSSocket;
  served?: ServedConnection;
}

/** Seats taken back (rate-limited by the logger, per kind). */
function evictionLog(n: number, seats: Seats): void {
  log.warn("connections closed to make room: anonymous and pending connections go first", {
    closed: n,
    open: seats.size,
    anonymous: seats.unprivileged,
  }, "listener.seats-taken-back");
}

export async function startListener(
  opts: {
    addresses: string[];
    port: number;
    serving: ServingContext;
    handlers: ListenerHandlers;
    limits?: Partial<HttpLimits>;
    /** The body of the listener's own error answers (e.g. a Kubernetes Status). */
    errorBody: ConnectionOptions["errorBody"];
    /** The server's timer service: one sweep checks every connection's deadlines. */
    timers: Timers;
  },
): Promise<Listener> {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };
  const servers: tls.Server[] = [];
  const seats = new Seats({
    max: limits.maxConnections,
    maxAnonymous: Math.min(limits.maxAnonymousConnections, limits.maxConnections),
  });
  /** The seat of each accepted TCP connection, found again from its TLS socket (`_parent`). */
  const seatOf = new WeakMap<object, ListenerSeat>();
  const bodyBudget = new BodyBudget(limits.requestBodyBufferBytes);
  const deadlines = connectionDeadlines(opts.timers, {
    headerTimeoutMs: limits.headerTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    bodyTimeoutMs: limits.requestBodyTimeoutMs,
    bodyIdleTimeoutMs: limits.requestBodyIdleTimeoutMs,
  });
  // Out of files: unprivileged connections give theirs back, a tenth at a time.
  const watchdog = new AcceptWatchdog({
    shed: () => seats.shed(Math.max(1, Math.ceil(seats.unprivileged / 10))),
  });
  const bound: string[] = [];
  let port = opts.port;
  const tlsOptions = () => ({
    cert: opts.serving.certPem,
    key: opts.serving.keyPem,
    ca: opts.serving.caPem,
  });

  const refuse = (socket: TLSSocket) => {
    log.warn("connection refused: too many open connections", {
      open: seats.size,
      max: limits.maxConnections,
    }, "listener.connection-cap");
    const { contentType, body } = opts.errorBody(
      503,
      `lite-apiserver: too many open connections (--max-connections ${limits.maxConnections})`,
    );
    const bytes = new TextEncoder().encode(body);
    socket.on("error", () => {});
    // Read and drop a little of what the client sends, so closing does not reset the connection
    // before it has read the answer; a client that floods is cut.
    let dropped = 0;
    socket.on("data", (d: Uint8Array) => {
      dropped += d.length;
      if (dropped > REFUSAL_DRAIN_BYTES) socket.destroy();
    });
    socket.end(
      `HTTP/1.1 503 ${
        statusText(503)
      }\r\nContent-Type: ${contentType}\r\nContent-Length: ${bytes.length}\r\n` +
        `Retry-After: 1\r\nConnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => socket.destroy(), 2000);
  };

  /** A TCP connection was accepted: it holds a seat until it closes, handshake or not. */
  const accepted = (raw: Socket) => {
    const seat: ListenerSeat = {
      kind: "pending",
      busy: () => seat.served?.busy() ?? false,
      evict: () => (seat.tls ?? raw).destroy(),
    };
    raw.on("error", () => {});
    if (!seats.admit(seat)) {
      raw.destroy();
      return;
    }
    seatOf.set(raw, seat);
    raw.once("close", () => {
      seats.release(seat);
      connectionClosed();
    });
    const evicted = seats.takeEvicted();
    if (evicted) evictionLog(evicted, seats);
  };

  const connection = (socket: TLSSocket) => {
    // deno-lint-ignore no-explicit-any
    const seat = seatOf.get((socket as any)._parent) ?? seatOf.get(socket);
    if (!seat) {
      // Evicted before its handshake finished, or not accepted through us.
      socket.destroy();
      return;
    }
    seat.tls = socket;
    socket.once("close", () => seats.release(seat));
    socket.setNoDelay(true);
    const peer = readPeer(socket);
    if (peer.presented && !peer.verified) reportUnverified(peer, socket, opts.serving.caPem);
    if (!seats.settle(seat, peer.verified ? "privileged" : "anonymous")) return refuse(socket);
    const evicted = seats.takeEvicted();
    if (evicted) evictionLog(evicted, seats);
    log.debug("connection", { protocol: socket.alpnProtocol || "http/1.1", remote: socket.remotePort });
    if (socket.alpnProtocol === "h2") {
      seat.served = serveH2Stream(
        socket,
        limits,
        { ...opts, bodyBudget },
        peer,
        () => seats.settle(seat, "privileged"),
      );
      return;
    }
    seat.served = serveConnection(socket, {
      headerTimeoutMs: limits.headerTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
      maxRequestBodyBytes: limits.maxRequestBodyBytes,
      maxPipelinedRequests: limits.maxPipelinedRequests,
      bodyTimeoutMs: limits.requestBodyTimeoutMs,
      bodyIdleTimeoutMs: limits.requestBodyIdleTimeoutMs,
      bodyBudget,
      deadlines,
      errorBody: opts.errorBody,
      onRequest: (req, res) => opts.handlers.request(req, res, peer),
      onUpgrade: (req, sock, head) => opts.handlers.upgrade(req, sock, head, peer),
      onProven: () => seats.settle(seat, "privileged"),
      onError: (message, status) => {
        if (status === 503) {
          log.warn("request refused", { error: message, remote: socket.remoteAddress }, "request.refused");
        } else if (status >= 500) log.error("request failed", { error: message }, "request.failed");
        else log.debug("bad request", { status, error: message, remote: socket.remoteAddress });
      },
    });
  };

  try {
    for (const address of opts.addresses) {
      const server = tls.createServer({
        ...tlsOptions(),
        requestCert: true,
        rejectUnauthorized: false,
        // h2 is served by our own codec (lib/listener/h2_connection.ts), not node:http2.
        ALPNProtocols: limits.http2 ? ["h2", "http/1.1"] : ["http/1.1"],
        handshakeTimeout: limits.tlsHandshakeTimeoutMs,
      });
      server.on("connection", accepted);
      server.on("secureConnection", connection);
      server.on("tlsClientError", (err: Error, socket?: TLSSocket) => {
        log.debug("TLS handshake failed", { reason: err.message });
        // A handshake that failed or timed out must not keep its file.
        socket?.destroy();
      });
      port = await listenOn(server, address, port);
      // After listening, errors are the accept loop's (e.g. EMFILE): never fatal.
      server.on("error", (err: NodeJS.ErrnoException) => watchdog.acceptError(err));
      servers.push(server);
      bound.push(address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  watchdog.start(servers);
  return {
    addresses: bound,
    port,
    setSecureContext(ctx) {
      opts.serving = ctx;
      for (const s of servers) s.setSecureContext(tlsOptions());
    },
    async close() {
      // Stop accepting, then drop open connections (idle keep-alive ones would hold close()
      // open forever).
      watchdog.stop();
      const closed = Promise.all(
        servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      for (const s of seats.all()) s.evict();
      await closed;
    },
  };
}
