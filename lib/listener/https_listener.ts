/**
 * The local HTTPS listener: `node:tls` with our own HTTP/1.1 layer (lib/http) above it (Deno's
 * `node:https` server stalls keep-alive connections; see DESIGN.md). Client certificates are
 * requested but optional, and verified against the cluster CA; what a connection's certificate
 * proves is read once per TLS connection. Connections beyond `maxConnections` are refused with a
 * 503 and closed.
 */
import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { ConfigError } from "../config/errors.ts";
import { log } from "../log.ts";
import { type ConnectionOptions, serveConnection } from "../http/server_connection.ts";
import type { ServerRequest } from "../http/request.ts";
import type { ServerResponse } from "../http/response.ts";
import { statusText } from "../http/status_text.ts";
import { clientCertFailure } from "../certs/client_cert_check.ts";

/** What the TLS layer proved about a connection's peer. */
export interface Peer {
  /** A client certificate was presented. */
  presented: boolean;
  /** It chains to the cluster CA (only then do cn/groups mean anything). */
  verified: boolean;
  cn: string;
  groups: string[];
  serial: string;
  error?: string;
}

export interface ServingContext {
  certPem: string;
  keyPem: string;
  caPem: string;
}

export interface ListenerHandlers {
  request(req: ServerRequest, res: ServerResponse, peer: Peer): void;
  upgrade(req: ServerRequest, socket: Duplex, head: Uint8Array, peer: Peer): void;
}

/** The HTTP layer's bounds (flags of `serve`). */
export interface HttpLimits {
  /** A request head must arrive whole within this time of its first byte. */
  headerTimeoutMs: number;
  /** Idle keep-alive connections are closed after this time. */
  idleTimeoutMs: number;
  /** Request bodies above this get a 413. */
  maxRequestBodyBytes: number;
  /** Open connections beyond this are refused with a 503. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headerTimeoutMs: 60_000,
  idleTimeoutMs: 120_000,
  maxRequestBodyBytes: 3 * 1024 * 1024,
  maxConnections: 2048,
};

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

/** Refusals at the connection cap are logged at most this often. */
const REFUSAL_LOG_MS = 10_000;

export async function startListener(
  opts: {
    addresses: string[];
    port: number;
    serving: ServingContext;
    handlers: ListenerHandlers;
    limits?: Partial<HttpLimits>;
    /** The body of the listener's own error answers (e.g. a Kubernetes Status). */
    errorBody: ConnectionOptions["errorBody"];
  },
): Promise<Listener> {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };
  const servers: tls.Server[] = [];
  const sockets = new Set<TLSSocket>();
  const bound: string[] = [];
  let port = opts.port;
  let refused = 0;
  let lastRefusalLog = -Infinity;
  const tlsOptions = () => ({
    cert: opts.serving.certPem,
    key: opts.serving.keyPem,
    ca: opts.serving.caPem,
  });

  const refuse = (socket: TLSSocket) => {
    refused++;
    const now = performance.now();
    if (now - lastRefusalLog >= REFUSAL_LOG_MS) {
      log.warn("connection refused: too many open connections", {
        open: sockets.size,
        max: limits.maxConnections,
        refused,
      }, "listener.connection-cap");
      lastRefusalLog = now;
      refused = 0;
    }
    const { contentType, body } = opts.errorBody(
      503,
      `lite-apiserver: too many open connections (--max-connections ${limits.maxConnections})`,
    );
    const bytes = new TextEncoder().encode(body);
    socket.on("error", () => {});
    // Read and drop what the client sends, so closing does not reset the connection before it
    // has read the answer.
    socket.resume();
    socket.end(
      `HTTP/1.1 503 ${
        statusText(503)
      }\r\nContent-Type: ${contentType}\r\nContent-Length: ${bytes.length}\r\n` +
        `Retry-After: 1\r\nConnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => socket.destroy(), 5000);
  };

  const connection = (socket: TLSSocket) => {
    if (sockets.size >= limits.maxConnections) return refuse(socket);
    socket.setNoDelay(true);
    const peer = readPeer(socket);
    if (peer.presented && !peer.verified) reportUnverified(peer, socket, opts.serving.caPem);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    serveConnection(socket, {
      headerTimeoutMs: limits.headerTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
      maxRequestBodyBytes: limits.maxRequestBodyBytes,
      errorBody: opts.errorBody,
      onRequest: (req, res) => opts.handlers.request(req, res, peer),
      onUpgrade: (req, sock, head) => opts.handlers.upgrade(req, sock, head, peer),
      onError: (message, status) => {
        if (status >= 500) log.error("request failed", { error: message }, "request.failed");
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
        // kubectl and client-go speak HTTP/1.1 fine; node:http2 is unstable under load here.
        ALPNProtocols: ["http/1.1"],
        handshakeTimeout: limits.headerTimeoutMs,
      });
      server.on("secureConnection", connection);
      server.on("tlsClientError", (err: Error) => log.debug("TLS handshake failed", { reason: err.message }));
      port = await listenOn(server, address, port);
      servers.push(server);
      bound.push(address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
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
      const closed = Promise.all(
        servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
