/**
 * The listener's hook for a connection that negotiated `h2` by ALPN: the same handler, limits,
 * identity (the connection's verified certificate; each stream's own Authorization header) and
 * logging as an HTTP/1.1 connection gets in https_listener.ts.
 */
import type { TLSSocket } from "node:tls";
import { log } from "../log.ts";
import type { ConnectionOptions } from "../http/server_connection.ts";
import type { HttpLimits, ListenerHandlers, Peer } from "./listener_types.ts";
import type { BodyBudget } from "../http/body_budget.ts";
import { H2ServerConnection } from "./h2_connection.ts";

export function serveH2Stream(
  socket: TLSSocket,
  limits: HttpLimits,
  opts: { handlers: ListenerHandlers; errorBody: ConnectionOptions["errorBody"]; bodyBudget: BodyBudget },
  peer: Peer,
  onProven: () => void,
): H2ServerConnection {
  return new H2ServerConnection(socket, {
    headerTimeoutMs: limits.headerTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    maxRequestBodyBytes: limits.maxRequestBodyBytes,
    bodyTimeoutMs: limits.requestBodyTimeoutMs,
    bodyBudget: opts.bodyBudget,
    errorBody: opts.errorBody,
    onRequest: (req, res) => opts.handlers.request(req, res, peer),
    onProven,
    onError: (message, status) => {
      if (status === 429) {
        log.warn(
          "HTTP/2 client misbehaved",
          { error: message, remote: socket.remoteAddress },
          "listener.h2-abuse",
        );
      } else if (status >= 500) log.error("request failed", { error: message }, "request.failed");
      else log.debug("bad HTTP/2 request", { status, error: message, remote: socket.remoteAddress });
    },
  });
}
