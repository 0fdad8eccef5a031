/**
 * Connection upgrades (kubectl exec, attach, port-forward over SPDY or WebSocket): the upgrade
 * request goes upstream on a fresh connection with the caller's credentials, then bytes are
 * relayed both ways as they are.
 */
import type { ServerRequest } from "../http/request.ts";
import type { Duplex } from "node:stream";
import type { Identity } from "../identity/identity.ts";
import type { UpstreamAgents } from "../upstream/agents.ts";
import type { UpstreamHealth } from "../upstream/health.ts";
import { endpointOf } from "../upstream/endpoint.ts";
import type { RequestSpec } from "../upstream/connection.ts";
import { endToEnd } from "./headers.ts";
import { statusObject } from "../exchange/status.ts";
import { log } from "../log.ts";
import { statusText } from "../http/status_text.ts";

function rawHead(status: number, message: string, headers: string[]): string {
  let head = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return head + "\r\n";
}

/** Answers an upgrade request with a Status of its own, and closes the connection. */
export function refuseUpgrade(socket: Duplex, code: number, message: string): void {
  const body = JSON.stringify(statusObject(code, message));
  socket.end(
    `HTTP/1.1 ${code} ${statusText(code) || "Error"}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
const refuse = refuseUpgrade;

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
  const ep = endpointOf(deps.health.order()[0].url);
  const headers = endToEnd(req.headers, req.rawHeaders);
  headers.host = ep.host;
  headers.connection = "Upgrade";
  headers.upgrade = req.headers.upgrade;
  const spec: RequestSpec = {
    method: req.method ?? "GET",
    path: ep.prefix + req.url,
    headers: headers as RequestSpec["headers"],
  };
  const call = deps.agents.agentFor(identity).upgrade(ep, spec);
  const timer = setTimeout(() => call.abort(), deps.backendTimeoutMs * 3);
  socket.on("error", () => call.abort());
  socket.once("close", () => call.abort());
  call.result.then(
    (r) => {
      clearTimeout(timer);
      if (r.kind === "answered") {
        // Refused upgrade (e.g. 403): relay the answer as is, then close.
        const res = r.response;
        socket.write(rawHead(res.statusCode, res.statusMessage, res.rawHeaders));
        res.pipe(socket);
        res.once("aborted", () => socket.destroy());
        return;
      }
      const usocket = r.socket;
      socket.write(
        rawHead(r.head.statusCode, r.head.statusMessage || "Switching Protocols", r.head.rawHeaders),
      );
      if (r.rest.byteLength) socket.write(r.rest);
      if (head.byteLength) usocket.write(head);
      usocket.pipe(socket);
      socket.pipe(usocket);
      usocket.on("error", () => socket.destroy());
      socket.on("close", () => usocket.destroy());
      usocket.on("close", () => socket.destroy());
    },
    (err: Error) => {
      clearTimeout(timer);
      log.debug("upgrade failed", { error: err.message });
      if (!socket.destroyed) {
        refuse(socket, 502, `upgrade to the cloud kube-apiserver failed: ${err.message}`);
      }
    },
  );
}
