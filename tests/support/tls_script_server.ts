/**
 * A tiny node:tls server on 127.0.0.1 whose answers a test scripts byte by byte: it reads whole
 * requests with lib/http's MessageReader and hands each to the test's handler, which writes the raw
 * response (or closes the connection). It counts connections and requests, for pool tests.
 */
import tls from "node:tls";
import { createPki, type Pki } from "./pki.ts";
import { type Message, MessageReader } from "../../lib/http/message_reader.ts";
import type { RequestHead } from "../../lib/http/head_parser.ts";

export type ScriptRequest = Message<RequestHead> & { text: string };

export interface ScriptConn {
  /** 1 for the first connection the server accepted, 2 for the next... */
  id: number;
  socket: tls.TLSSocket;
  /** Requests read on this connection so far. */
  requests: number;
}

export type ScriptHandler = (req: ScriptRequest, conn: ScriptConn) => void;

export interface ScriptServer {
  port: number;
  url: string;
  pki: Pki;
  /** Connections accepted so far. */
  connections: ScriptConn[];
  /** Connections not closed yet. */
  open(): number;
  /** Requests read, in order, with the connection each came on. */
  requests: Array<{ path: string; method: string; conn: number }>;
  handler: ScriptHandler;
  /** Replaces request parsing by the test's own use of the socket. */
  raw?: (socket: tls.TLSSocket, conn: ScriptConn) => void;
  close(): Promise<void>;
}

let shared: Promise<{ pki: Pki; cert: string; key: string }> | undefined;

/**
 * One PKI for every script server of a test run (openssl is slow), removed when the test process
 * ends (a test file needs no "cleanup" test of its own).
 */
function material() {
  shared ??= (async () => {
    const pki = await createPki();
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(pki.dir, { recursive: true });
      } catch { /* removed already */ }
    });
    const pair = await pki.server("script");
    return { pki, cert: pair.certPem, key: pair.keyPem };
  })();
  return shared;
}

export function ok(body: string | Uint8Array, headers = ""): Uint8Array {
  const b = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const head = new TextEncoder().encode(
    `HTTP/1.1 200 OK\r\ncontent-length: ${b.byteLength}\r\n${headers}\r\n`,
  );
  const out = new Uint8Array(head.byteLength + b.byteLength);
  out.set(head);
  out.set(b, head.byteLength);
  return out;
}

export async function startScriptServer(handler: ScriptHandler): Promise<ScriptServer> {
  const m = await material();
  const live = new Set<tls.TLSSocket>();
  const s: ScriptServer = {
    port: 0,
    url: "",
    pki: m.pki,
    connections: [],
    requests: [],
    handler,
    open: () => live.size,
    close: async () => {
      for (const sock of live) sock.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = tls.createServer({ cert: m.cert, key: m.key }, (socket) => {
    live.add(socket);
    socket.setNoDelay(true);
    socket.once("close", () => live.delete(socket));
    socket.on("error", () => {});
    const conn: ScriptConn = { id: s.connections.length + 1, socket, requests: 0 };
    s.connections.push(conn);
    if (s.raw) return s.raw(socket, conn);
    const reader = new MessageReader<RequestHead>("request");
    let seen = 0;
    socket.on("data", (c: Uint8Array) => {
      reader.push(c);
      while (seen < reader.messages.length) {
        const msg = reader.messages[seen++];
        conn.requests++;
        s.requests.push({ path: msg.head.url, method: msg.head.method, conn: conn.id });
        s.handler({ ...msg, text: new TextDecoder().decode(msg.body) }, conn);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  s.port = (server.address() as { port: number }).port;
  s.url = `https://127.0.0.1:${s.port}`;
  return s;
}

/** Removes the shared PKI directory (call once, at the end of a test file). */
export async function removeScriptPki(): Promise<void> {
  if (!shared) return;
  const m = await shared;
  shared = undefined;
  await Deno.remove(m.pki.dir, { recursive: true }).catch(() => {});
}

/**
 * A TLS server on `Deno.listenTls` that does not read a connection until `read()` is called: unlike
 * a paused node:tls socket (which Deno keeps reading), the peer meets real TCP backpressure.
 */
export interface HoldingServer {
  url: string;
  /** Resolves once a connection was accepted. */
  accepted: Promise<Deno.TlsConn>;
  close(): void;
}

export async function startHoldingServer(): Promise<HoldingServer> {
  const m = await material();
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: m.cert, key: m.key });
  const conns: Deno.TlsConn[] = [];
  const accepted = listener.accept().then((c) => (conns.push(c), c));
  accepted.catch(() => {});
  return {
    url: `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted,
    close: () => {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      listener.close();
    },
  };
}
