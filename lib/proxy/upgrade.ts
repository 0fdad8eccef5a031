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
import { encodeChunk, LAST_CHUNK } from "../http/body.ts";
import { tokens } from "../http/headers.ts";
import type { UpstreamResponse } from "../upstream/response.ts";

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

/** Fields that describe the upstream connection or the body's framing there, not the answer. */
const NOT_RELAYED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "content-length",
]);

/** A refusal is a Status object: more than this is not one, and is not relayed further. */
const MAX_REFUSAL_BYTES = 1 << 20;

/**
 * A refused upgrade (e.g. 403 for kubectl exec into a forbidden pod): the answer is relayed with
 * framing of our own, as its body was decoded on the way in. A Content-Length answer keeps its
 * length; anything else goes out chunked, and a body cut short upstream ends without the last
 * chunk (the connection is dropped), so the client never takes it as whole. Then the connection
 * closes. Bounds: the upstream body waits while the client socket is full; a body over
 * MAX_REFUSAL_BYTES, or a relay not done within `deadlineMs` (a client that stops reading or an
 * upstream that trickles), drops both connections.
 */
function relayRefusal(res: UpstreamResponse, socket: Duplex, deadlineMs: number): void {
  const raw = res.rawHeaders;
  const named = new Set(tokens(res.headers.connection));
  const fields: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!NOT_RELAYED.has(name) && !named.has(name)) fields.push(raw[i], raw[i + 1]);
  }
  const status = res.statusCode;
  const bodyless = status === 204 || status === 304;
  const length = res.headers["content-length"];
  const chunked = !bodyless && length === undefined;
  if (chunked) fields.push("Transfer-Encoding", "chunked");
  else if (!bodyless) fields.push("Content-Length", String(length));
  fields.push("Connection", "close");
  const drop = () => {
    clearTimeout(deadline);
    res.destroy();
    socket.destroy();
  };
  const deadline = setTimeout(drop, deadlineMs);
  socket.write(rawHead(status, res.statusMessage, fields));
  const onDrain = () => res.resume();
  socket.on("drain", onDrain);
  socket.once("close", () => clearTimeout(deadline));
  let bytes = 0;
  res.on("data", (c: Uint8Array) => {
    if (bodyless || c.byteLength === 0) return;
    if ((bytes += c.byteLength) > MAX_REFUSAL_BYTES) return drop();
    if (!socket.write(chunked ? encodeChunk(c) : c)) res.pause();
  });
  res.once("end", () => {
    clearTimeout(deadline);
    socket.off("drain", onDrain);
    socket.end(chunked ? LAST_CHUNK : undefined);
  });
  res.once("aborted", drop);
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
      if (r.kind === "answered") return relayRefusal(r.response, socket, deps.backendTimeoutMs * 3);
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
