/**
 * Connection upgrades (kubectl exec, attach, port-forward over SPDY or WebSocket): the upgrade
 * request goes upstream with the caller's credentials, then bytes are relayed both ways as they are.
 */
import https from "node:https";
import type { IncomingMessage } from "node:http";
import type { ServerRequest } from "../http/request.ts";
import type { Duplex } from "node:stream";
import type { Identity } from "../identity/identity.ts";
import type { UpstreamAgents } from "../upstream/agents.ts";
import type { UpstreamHealth } from "../upstream/health.ts";
import { endToEnd } from "./headers.ts";
import { statusObject } from "./status.ts";
import { log } from "../log.ts";

function rawHead(status: number, message: string, headers: IncomingMessage["rawHeaders"]): string {
  let head = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return head + "\r\n";
}

function refuse(socket: Duplex, code: number, message: string) {
  const body = JSON.stringify(statusObject(code, message));
  socket.end(
    `HTTP/1.1 ${code} ${
      code === 503 ? "Service Unavailable" : "Bad Gateway"
    }\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function tunnelUpgrade(
  req: ServerRequest,
  socket: Duplex,
  head: Uint8Array,
  identity: Identity,
  deps: { agents: UpstreamAgents; health: UpstreamHealth; backendTimeoutMs: number },
): void {
  if (!deps.health.online) {
    return refuse(
      socket,
      503,
      "the cloud kube-apiserver is unreachable; exec, attach and port-forward need it",
    );
  }
  const ep = deps.health.order()[0];
  const base = new URL(ep.url);
  const headers = endToEnd(req.headers);
  headers.host = base.host;
  headers.connection = "Upgrade";
  headers.upgrade = req.headers.upgrade;
  // Upgraded sockets are not pooled: a fresh connection with the caller's credentials.
  const agent = deps.agents.agentFor(identity);
  const upstream = https.request({
    hostname: base.hostname.replace(/^\[|\]$/g, ""),
    port: base.port || 443,
    path: base.pathname.replace(/\/$/, "") + req.url,
    method: req.method,
    headers,
    ca: agent.options.ca,
    cert: agent.options.cert,
    key: agent.options.key,
    agent: false,
  });
  const timer = setTimeout(() => upstream.destroy(new Error("no answer in time")), deps.backendTimeoutMs * 3);
  socket.on("error", () => upstream.destroy());
  upstream.on("upgrade", (ures, usocket, uhead) => {
    clearTimeout(timer);
    socket.write(
      rawHead(ures.statusCode ?? 101, ures.statusMessage ?? "Switching Protocols", ures.rawHeaders),
    );
    if (uhead.length) socket.write(uhead);
    if (head.length) usocket.write(head);
    usocket.pipe(socket);
    socket.pipe(usocket);
    usocket.on("error", () => socket.destroy());
    socket.on("close", () => usocket.destroy());
    usocket.on("close", () => socket.destroy());
  });
  upstream.on("response", (ures) => {
    // Refused upgrade (e.g. 403): relay the answer as is.
    clearTimeout(timer);
    socket.write(rawHead(ures.statusCode ?? 502, ures.statusMessage ?? "", ures.rawHeaders));
    ures.pipe(socket);
  });
  upstream.on("error", (err) => {
    clearTimeout(timer);
    log.debug("upgrade failed", { error: err.message });
    if (!socket.destroyed) refuse(socket, 502, `upgrade to the cloud kube-apiserver failed: ${err.message}`);
  });
  upstream.end();
}
