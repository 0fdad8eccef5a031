/**
 * Refused upgrades against a scripted node:tls upstream: the answer reaches the client framed so
 * it can be parsed (its body was de-chunked on the way in), a body cut short upstream never looks
 * whole, and an oversized refusal is dropped at its bound.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Duplex } from "node:stream";
import { RequestHeadParser } from "../http/head_parser.ts";
import { ServerRequest } from "../http/request.ts";
import { MessageReader } from "../http/message_reader.ts";
import type { ResponseHead } from "../http/head_parser.ts";
import { UpstreamAgents } from "../upstream/agents.ts";
import { UpstreamHealth } from "../upstream/health.ts";
import { tunnelUpgrade } from "./upgrade.ts";
import { type ScriptHandler, startScriptServer } from "../../tests/support/tls_script_server.ts";
import { within } from "../../tests/support/harness.ts";

const enc = new TextEncoder();

/** The client's side: a socket recording what lite-apiserver writes, and how it ended. */
class ClientSocket extends Duplex {
  bytes: Uint8Array[] = [];
  ended: Promise<"end" | "destroyed">;
  #settle!: (v: "end" | "destroyed") => void;
  constructor() {
    super();
    this.ended = new Promise((r) => (this.#settle = r));
  }
  override _read(): void {}
  override _write(chunk: Uint8Array, _e: string, cb: () => void): void {
    this.bytes.push(chunk);
    cb();
  }
  override _final(cb: () => void): void {
    this.#settle("end");
    cb();
  }
  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.#settle("destroyed");
    cb(err);
  }
  size(): number {
    return this.bytes.reduce((n, b) => n + b.byteLength, 0);
  }
  read_(): MessageReader<ResponseHead> {
    const r = new MessageReader<ResponseHead>("response");
    for (const b of this.bytes) r.push(b);
    return r;
  }
}

async function refusal(script: ScriptHandler, backendTimeoutMs = 5_000): Promise<ClientSocket> {
  const s = await startScriptServer(script);
  const agents = new UpstreamAgents(s.pki.caPem);
  const health = new UpstreamHealth({
    endpoints: [s.url],
    intervalMs: 60_000,
    failures: 1,
    timeoutMs: 1000,
    pool: () => agents.anonymous(),
  });
  health.close();
  const parser = new RequestHeadParser();
  parser.feed(enc.encode(
    "POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: lite\r\n" +
      "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
  ));
  const socket = new ClientSocket();
  const req = new ServerRequest(parser.head!, socket, { pull() {} });
  try {
    tunnelUpgrade(req, socket, new Uint8Array(), { kind: "anonymous", cacheId: "anonymous" }, {
      agents,
      health,
      backendTimeoutMs,
    });
    await within(socket.ended, "the refused upgrade's answer to end");
    return socket;
  } finally {
    agents.destroy();
    await s.close();
  }
}

const STATUS = JSON.stringify({ kind: "Status", apiVersion: "v1", code: 403, reason: "Forbidden" });
const chunk = (s: string) => `${enc.encode(s).byteLength.toString(16)}\r\n${s}\r\n`;
const HEAD = "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";

Deno.test("a chunked refusal reaches the client as one message it can parse, then the connection closes", async () => {
  const c = await refusal((_req, conn) => {
    conn.socket.write(HEAD + chunk(STATUS.slice(0, 20)));
    conn.socket.write(chunk(STATUS.slice(20)) + "0\r\n\r\n");
  });
  const r = c.read_();
  assertEquals(await c.ended, "end");
  assertEquals(r.error, undefined);
  assertEquals(r.messages.length, 1);
  assertEquals(r.messages[0].head.statusCode, 403);
  assertEquals(new TextDecoder().decode(r.messages[0].body), STATUS);
  assertEquals(String(r.messages[0].head.headers.connection), "close");
});

Deno.test("a Content-Length refusal keeps its length", async () => {
  const c = await refusal((_req, conn) =>
    conn.socket.write(`HTTP/1.1 401 Unauthorized\r\ncontent-length: ${STATUS.length}\r\n\r\n${STATUS}`)
  );
  const r = c.read_();
  assertEquals([r.messages[0]?.head.statusCode, r.messages[0]?.head.contentLength], [401, STATUS.length]);
});

Deno.test("a refusal whose body is cut short upstream ends without the last chunk", async () => {
  const c = await refusal((_req, conn) => {
    conn.socket.write(HEAD + chunk(STATUS.slice(0, 20)));
    conn.socket.destroy();
  });
  assertEquals(await c.ended, "destroyed");
  const r = c.read_();
  assertEquals(r.messages.length, 0, "no whole message");
});

Deno.test("a refusal over 1 MiB is dropped at the bound", async () => {
  const piece = chunk("x".repeat(64 * 1024));
  const c = await refusal((_req, conn) => {
    let sent = 0;
    conn.socket.write(HEAD);
    const pump = () => {
      while (sent < 64 && !conn.socket.destroyed) {
        sent++;
        if (!conn.socket.write(piece)) return void conn.socket.once("drain", pump);
      }
    };
    pump();
  });
  assertEquals(await c.ended, "destroyed");
  assert(c.size() < (1 << 20) + 64 * 1024 + 4096, `relayed ${c.size()} bytes`);
});

Deno.test("a refusal that never finishes is dropped at the deadline (3 backend timeouts)", async () => {
  const c = await refusal((_req, conn) => void conn.socket.write(HEAD + chunk(STATUS.slice(0, 20))), 100);
  assertEquals(await c.ended, "destroyed");
  assertEquals(c.read_().messages.length, 0);
});
