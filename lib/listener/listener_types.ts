/**
 * The listener's seams: what a connection's TLS layer proved (`Peer`), who handles its requests,
 * and its bounds. Apart from https_listener.ts so that the HTTP/1.1 and HTTP/2 servers can share
 * them without importing each other.
 */
import type { Duplex } from "node:stream";
import type { ServerRequest } from "../http/request.ts";
import type { ServerResponse } from "../http/response.ts";

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
  /** Open connections (TCP, from accept) beyond this are refused. */
  maxConnections: number;
  // --- bounds (issue 18) ---
  /** Connections without a verified certificate or proven token (and pending handshakes). */
  maxAnonymousConnections: number;
  /** A TLS handshake must finish within this time of accept. */
  tlsHandshakeTimeoutMs: number;
  /** Requests in a row sent before the previous answer went out (pipelining). */
  maxPipelinedRequests: number;
  /** A request body must arrive whole within this time of its head (0: none). */
  requestBodyTimeoutMs: number;
  /** Longest silence between request-body bytes (0: none). */
  requestBodyIdleTimeoutMs: number;
  /** Request-body bytes held in memory by all requests together. */
  requestBodyBufferBytes: number;
  /** Offer h2 by ALPN (issue 21 part 2); clients that do not ask for it get HTTP/1.1. */
  http2: boolean;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headerTimeoutMs: 60_000,
  idleTimeoutMs: 120_000,
  maxRequestBodyBytes: 3 * 1024 * 1024,
  maxConnections: 2048,
  maxAnonymousConnections: 1536,
  tlsHandshakeTimeoutMs: 10_000,
  maxPipelinedRequests: 32,
  requestBodyTimeoutMs: 60_000,
  requestBodyIdleTimeoutMs: 30_000,
  requestBodyBufferBytes: 32 * 1024 * 1024,
  http2: false,
};
