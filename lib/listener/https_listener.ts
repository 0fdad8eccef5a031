/**
 * The local HTTPS listener. Client certificates are requested but optional, and verified against
 * the cluster CA; what a connection's certificate proves is read once per TLS connection.
 */
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { ConfigError } from "../config/errors.ts";
import { log } from "../log.ts";
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
  request(req: IncomingMessage, res: ServerResponse, peer: Peer): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Uint8Array, peer: Peer): void;
}

export interface Listener {
  /** Bound addresses as host:port. */
  addresses: string[];
  port: number;
  setSecureContext(ctx: ServingContext): void;
  close(): Promise<void>;
}

const ANONYMOUS_PEER: Peer = { presented: false, verified: false, cn: "", groups: [], serial: "" };
const peers = new WeakMap<object, Peer>();

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

/** The peer of the connection a request arrived on (computed once, at the handshake). */
export function peerOf(socket: object): Peer {
  let p = peers.get(socket);
  if (!p) {
    p = readPeer(socket as TLSSocket);
    peers.set(socket, p);
  }
  return p;
}

function listenOn(server: https.Server, address: string, port: number): Promise<number> {
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

export async function startListener(
  opts: { addresses: string[]; port: number; serving: ServingContext; handlers: ListenerHandlers },
): Promise<Listener> {
  const servers: https.Server[] = [];
  const sockets = new Set<Duplex>();
  const bound: string[] = [];
  let port = opts.port;
  const tlsOptions = () => ({
    cert: opts.serving.certPem,
    key: opts.serving.keyPem,
    ca: opts.serving.caPem,
  });
  try {
    for (const address of opts.addresses) {
      const server = https.createServer({
        ...tlsOptions(),
        requestCert: true,
        rejectUnauthorized: false,
        // kubectl and client-go speak HTTP/1.1 fine; node:http2 is unstable under load here.
        ALPNProtocols: ["http/1.1"],
        keepAliveTimeout: 120_000,
        headersTimeout: 60_000,
        requestTimeout: 0,
      });
      server.on("secureConnection", (socket: TLSSocket) => {
        socket.setNoDelay(true);
        const peer = readPeer(socket);
        peers.set(socket, peer);
        if (peer.presented && !peer.verified) {
          log.warn("client certificate did not verify: treating the connection as anonymous", {
            cn: peer.cn,
            // security (issue 10): the real reason, not the TLS layer's one code for every failure.
            reason: clientCertFailure(socket.getPeerCertificate().raw, opts.serving.caPem) ?? peer.error,
            remote: socket.remoteAddress,
          });
        }
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
      });
      server.on("request", (req, res) => opts.handlers.request(req, res, peerOf(req.socket)));
      server.on(
        "upgrade",
        (req, socket, head) => opts.handlers.upgrade(req, socket, head, peerOf(req.socket)),
      );
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
