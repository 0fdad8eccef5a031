/**
 * The upstream connection pool against tiny scripted node:tls servers: framing of answers
 * (content-length, chunked, close-delimited, split anywhere), reuse only after a complete answer,
 * the keep-alive race (idempotent requests only), backpressure both ways, idle expiry, the cap on
 * connections, retirement.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects as assertRejects } from "node:assert/strict";
import { Readable } from "node:stream";
import type { TLSSocket } from "node:tls";
import { UpstreamPool } from "./pool.ts";
import { endpointOf } from "./endpoint.ts";
import { makeDial } from "./https_proxy.ts";
import type { UpstreamResponse } from "./response.ts";
import {
  ok,
  type ScriptServer,
  startHoldingServer,
  startScriptServer,
} from "../../tests/support/tls_script_server.ts";
import { MessageReader } from "../http/message_reader.ts";
import type { RequestHead } from "../http/head_parser.ts";
import { eventually, within } from "../../tests/support/harness.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The whole body (bounded: a body that never ends fails the test). */
function readAll(res: UpstreamResponse): Promise<Uint8Array> {
  return within(readBody(res), "the whole response body");
}

function readBody(res: UpstreamResponse): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    res.on("data", (c: Uint8Array) => parts.push(c));
    res.on("end", () => resolve(Buffer.concat(parts)));
    res.on("aborted", () => reject(new Error("response aborted")));
  });
}

async function withServer(
  fn: (
    s: ScriptServer,
    pool: UpstreamPool,
    get: (path: string, method?: string) => Promise<UpstreamResponse>,
  ) => Promise<void>,
  opts: { maxSockets?: number; idleMs?: number; dialed?: TLSSocket[] } = {},
) {
  const s = await startScriptServer(() => {});
  const dial = makeDial();
  const pool = new UpstreamPool({
    ca: s.pki.caPem,
    maxSockets: opts.maxSockets,
    idleMs: opts.idleMs,
    dial: (o) => {
      const d = dial(o);
      d.ready.then((sock) => opts.dialed?.push(sock), () => {});
      return d;
    },
  });
  const ep = endpointOf(s.url);
  const get = (path: string, method = "GET") =>
    within(pool.request(ep, { method, path, headers: { host: ep.host } }).response, `the answer to ${path}`);
  try {
    await fn(s, pool, get);
  } finally {
    pool.destroy();
    await s.close();
  }
}

Deno.test("content-length answers: the body whole, and the connection reused for the next request", async () => {
  await withServer(async (s, _pool, get) => {
    s.handler = (req, conn) => conn.socket.write(ok(`answer to ${req.head.url}`));
    for (const p of ["/a", "/b", "/c"]) {
      const res = await get(p);
      assertEquals(res.statusCode, 200);
      assertEquals(text(await readAll(res)), `answer to ${p}`);
    }
    assertEquals(s.connections.length, 1, "three sequential requests share one keep-alive connection");
    assertEquals(s.requests.map((r) => r.conn), [1, 1, 1]);
  });
});

Deno.test("chunked answers written in pieces (head and chunks split anywhere) are decoded and complete", async () => {
  await withServer(async (s, _pool, get) => {
    const body = "x".repeat(3000) + "end";
    const wire = enc.encode(
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n" +
        `${(1000).toString(16)}\r\n${body.slice(0, 1000)}\r\n` +
        `${(body.length - 1000).toString(16)}\r\n${body.slice(1000)}\r\n0\r\n\r\n`,
    );
    // Every split point of the first 120 bytes (the head and the first chunk line), then a few later ones.
    const splits = [...Array.from({ length: 120 }, (_, i) => i + 1), 1005, 2000, wire.byteLength - 3];
    s.handler = (_req, conn) => {
      const at = splits[conn.requests - 1];
      conn.socket.write(wire.subarray(0, at));
      setTimeout(() => conn.socket.write(wire.subarray(at)), 1);
    };
    for (let i = 0; i < splits.length; i++) {
      const res = await get(`/split/${splits[i]}`);
      assertEquals(res.headers["content-type"], "text/plain");
      assertEquals(text(await readAll(res)), body, `split at ${splits[i]}`);
    }
    assertEquals(s.connections.length, 1, "each complete chunked answer left the connection reusable");
  });
});

Deno.test("a close-delimited answer passes on every byte but ends as cut short; its connection is not reused", async () => {
  await withServer(async (s, pool, get) => {
    s.handler = (req, conn) => {
      if (req.head.url === "/close") {
        conn.socket.write(enc.encode("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil"));
        setTimeout(() => conn.socket.end(enc.encode(" the close")), 1);
      } else conn.socket.write(ok("next"));
    };
    const res = await get("/close");
    // node:tls in Deno reports a bare FIN as it reports close_notify: the end cannot be trusted
    // (RFC 9112 §9.8), so the answer is "aborted", never complete.
    const parts: Uint8Array[] = [];
    res.on("data", (c: Uint8Array) => parts.push(c));
    const ended = await within(
      new Promise<string>((r) => {
        res.once("end", () => r("end"));
        res.once("aborted", () => r("aborted"));
      }),
      "the close-delimited answer to end or abort",
    );
    assertEquals([ended, res.complete, text(Buffer.concat(parts))], ["aborted", false, "until the close"]);
    assertEquals(text(await readAll(await get("/next"))), "next");
    assertEquals(s.requests.map((r) => r.conn), [1, 2], "the next request needed a new connection");
    await eventually(() => pool.openConnections === 1, "the closed connection forgotten by the pool");
  });
});

Deno.test("a connection is reused only after a complete answer", async () => {
  await withServer(async (s, _pool, get) => {
    let finishSlow: (() => void) | undefined;
    s.handler = (req, conn) => {
      if (req.head.url === "/slow") {
        conn.socket.write(enc.encode("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345"));
        finishSlow = () => conn.socket.write(enc.encode("67890"));
      } else conn.socket.write(ok(`fast on ${conn.id}`));
    };
    const slow = await get("/slow");
    const slowBody = readAll(slow);
    // While /slow's body is unfinished, its connection is not offered to anyone else.
    assertEquals(text(await readAll(await get("/fast"))), "fast on 2");
    finishSlow!();
    assertEquals(text(await slowBody), "1234567890");
    // LIFO: the most recently released connection (1, just completed) is the one reused.
    assertEquals(text(await readAll(await get("/fast"))), "fast on 1");
    assertEquals(s.connections.length, 2);
  });
});

Deno.test("keep-alive race: a GET that dies on a reused idle connection is sent again on a fresh one", async () => {
  await withServer(async (s, _pool, get) => {
    // The server answers the first request on each connection, then drops the connection when the
    // next request arrives on it without answering: what an upstream's idle timeout looks like.
    s.handler = (req, conn) => {
      if (conn.requests === 1) conn.socket.write(ok(`first ${req.head.url}`));
      else conn.socket.destroy();
    };
    assertEquals(text(await readAll(await get("/one"))), "first /one");
    assertEquals(text(await readAll(await get("/two"))), "first /two");
    assertEquals(
      s.requests.map((r) => `${r.path}@${r.conn}`),
      ["/one@1", "/two@1", "/two@2"],
      "sent on the reused connection, then once more on a fresh one",
    );
  });
});

Deno.test("keep-alive race: a POST is not sent twice", async () => {
  await withServer(async (s, _pool, get) => {
    s.handler = (req, conn) => {
      if (conn.requests === 1) conn.socket.write(ok(`first ${req.head.url}`));
      else conn.socket.destroy();
    };
    assertEquals(text(await readAll(await get("/one"))), "first /one");
    await assertRejects(() => get("/create", "POST"), Error);
    assertEquals(s.requests.map((r) => `${r.method} ${r.path}@${r.conn}`), ["GET /one@1", "POST /create@1"]);
  });
});

Deno.test("a GET that fails on a fresh connection is not retried", async () => {
  await withServer(async (s, _pool, get) => {
    s.handler = (_req, conn) => conn.socket.destroy();
    await assertRejects(() => get("/x"), Error);
    assertEquals(s.requests.length, 1);
  });
});

Deno.test("backpressure upstream → client: an unread answer pauses the upstream socket; nothing is lost", async () => {
  const dialed: TLSSocket[] = [];
  await withServer(async (s, _pool, get) => {
    const size = 16 << 20;
    const block = new Uint8Array(64 * 1024).fill(0x61);
    s.handler = (_req, conn) => {
      conn.socket.write(enc.encode(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`));
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          sent += block.byteLength;
          if (!conn.socket.write(block)) return void conn.socket.once("drain", pump);
        }
      };
      pump();
    };
    const res = await get("/big");
    await eventually(() => dialed[0]?.isPaused(), "the upstream socket paused while the answer is unread");
    assert(res.readableLength < 1 << 20, `buffered ${res.readableLength} bytes while paused`);
    const body = await readAll(res);
    assertEquals(body.byteLength, size);
  }, { dialed });
});

Deno.test("backpressure client → upstream: a streamed request body waits for the upstream to read", async () => {
  // The upstream is a Deno.listenTls server that reads nothing until told: a paused node:tls server
  // socket would keep reading in Deno, and on a fast idle machine the body would never back up.
  const s = await startHoldingServer();
  const pki = await startScriptServer(() => {});
  const pool = new UpstreamPool({ ca: pki.pki.caPem, dial: makeDial() });
  const size = 16 << 20;
  let produced = 0;
  const source = new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (produced >= size) return void this.push(null);
      produced += 64 * 1024;
      this.push(new Uint8Array(64 * 1024).fill(0x62));
    },
  });
  try {
    const ep = endpointOf(s.url);
    const call = pool.request(ep, {
      method: "PUT",
      path: "/upload",
      headers: { host: ep.host, "content-length": size },
      stream: source,
    });
    const conn = await within(s.accepted, "the upstream connection");
    await eventually(() => source.isPaused(), "the client body paused by the upstream's backpressure");
    assert(
      produced < size,
      `only part of the body was produced while the upstream did not read (${produced})`,
    );
    // Now the upstream reads everything, then answers.
    const reader = new MessageReader<RequestHead>("request");
    const buf = new Uint8Array(256 * 1024);
    let received = 0;
    while (reader.messages.length === 0) {
      const n = await within(conn.read(buf), "the request body at the upstream");
      if (n === null) throw new Error("the upstream connection ended before the whole request");
      received += n;
      reader.push(buf.slice(0, n));
    }
    await conn.write(ok("stored"));
    const res = await within(call.response, "the answer to the upload");
    assertEquals(text(await readAll(res)), "stored");
    assert(received >= size);
    assertEquals(reader.messages[0].body.byteLength, size);
  } finally {
    pool.destroy();
    s.close();
    await pki.close();
  }
});

Deno.test("idle connections expire", async () => {
  await withServer(async (s, pool, get) => {
    s.handler = (_req, conn) => conn.socket.write(ok("x"));
    await readAll(await get("/x"));
    assertEquals(pool.openConnections, 1);
    await eventually(() => pool.openConnections === 0 && s.open() === 0, "the idle connection closed");
  }, { idleMs: 100 });
});

Deno.test("at most maxSockets connections per endpoint; further requests wait their turn", async () => {
  await withServer(async (s, _pool, get) => {
    const pending: Array<() => void> = [];
    let most = 0;
    s.handler = (_req, conn) => {
      most = Math.max(most, s.open());
      pending.push(() => conn.socket.write(ok(`on ${conn.id}`)));
    };
    const answers = [get("/1"), get("/2"), get("/3"), get("/4")].map(async (p) =>
      text(await readAll(await p))
    );
    await eventually(() => pending.length === 2, "two requests at the server");
    assertEquals(s.connections.length, 2, "no third connection while two are busy");
    for (let i = 0; i < 4; i++) {
      await eventually(() => pending.length > 0, `request ${i + 1} at the server`);
      pending.shift()!();
    }
    const got = await Promise.all(answers);
    assertEquals(got.length, 4);
    assertEquals(s.connections.length, 2);
    assertEquals(most, 2);
  }, { maxSockets: 2 });
});

Deno.test("a retired pool closes its idle connections and never reuses busy ones", async () => {
  await withServer(async (s, pool, get) => {
    let finish: (() => void) | undefined;
    s.handler = (req, conn) => {
      if (req.head.url === "/busy") {
        conn.socket.write(enc.encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\na"));
        finish = () => conn.socket.write(enc.encode("b"));
      } else conn.socket.write(ok("idle"));
    };
    const busy = await get("/busy");
    await readAll(await get("/idle"));
    assertEquals(pool.openConnections, 2);
    pool.retire();
    await eventually(() => pool.openConnections === 1, "the idle connection closed at retirement");
    const body = readAll(busy);
    finish!();
    assertEquals(text(await body), "ab");
    await eventually(() => pool.openConnections === 0, "the busy connection closed after its answer");
  });
});

Deno.test("aborting a call closes its connection; an invalid answer is an error, not a guess", async () => {
  await withServer(async (s, pool) => {
    s.handler = (req, conn) => {
      if (req.head.url === "/bad") {
        conn.socket.write(
          enc.encode("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"),
        );
      }
    };
    const ep = endpointOf(s.url);
    const bad = pool.request(ep, { method: "GET", path: "/bad", headers: { host: ep.host } });
    const err = await within(bad.response, "the invalid answer").then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    assertEquals(err?.code, "EPROTO");
    const hang = pool.request(ep, { method: "GET", path: "/hang", headers: { host: ep.host } });
    await eventually(() => s.requests.length === 2, "the second request at the server");
    hang.abort();
    await assertRejects(() => hang.response, Error);
    await eventually(() => s.open() === 0, "both connections closed");
  });
});

Deno.test("an early answer while the body is still streaming: the connection is not reused, and abort closes it", async () => {
  await withServer(async (s, pool, get) => {
    s.raw = (socket) => {
      socket.once("data", () => socket.write(ok("too large", "connection: keep-alive\r\n")));
    };
    const ep = endpointOf(s.url);
    const endless = new Readable({ read() {} });
    endless.push(new Uint8Array(1024));
    const call = pool.request(ep, {
      method: "PUT",
      path: "/upload",
      headers: { host: ep.host, "content-length": 1 << 20 },
      stream: endless,
    });
    const res = await within(call.response, "the early answer");
    assertEquals(text(await readAll(res)), "too large");
    s.raw = undefined;
    s.handler = (_req, conn) => conn.socket.write(ok("fresh"));
    assertEquals(text(await readAll(await get("/next"))), "fresh");
    assertEquals(
      s.connections.length,
      2,
      "the unfinished upload's connection was not offered to the next request",
    );
    call.abort();
    await eventually(() => s.open() === 1, "the unfinished upload's connection closed at abort");
  });
});

Deno.test("aborting a finished call does not touch its connection's next exchange", async () => {
  await withServer(async (s, pool, get) => {
    let answerB: (() => void) | undefined;
    s.handler = (req, conn) => {
      if (req.head.url === "/a") conn.socket.write(ok("a"));
      else answerB = () => conn.socket.write(ok("b"));
    };
    const ep = endpointOf(s.url);
    const a = pool.request(ep, { method: "GET", path: "/a", headers: { host: ep.host } });
    assertEquals(text(await readAll(await a.response)), "a");
    const b = get("/b");
    await eventually(() => answerB, "/b at the server");
    a.abort();
    answerB!();
    assertEquals(text(await readAll(await b)), "b");
    assertEquals(
      s.requests.map((r) => `${r.path}@${r.conn}`),
      ["/a@1", "/b@1"],
      "/b was not cut and re-sent",
    );
  });
});

Deno.test("a call nobody awaits any more fails quietly: no unhandled rejection when its connection dies", async () => {
  await withServer(async (s, pool) => {
    s.raw = (socket) => socket.once("data", () => socket.destroy());
    const ep = endpointOf(s.url);
    // A caller that gave up (its client left) never looks at `response` again.
    pool.request(ep, { method: "POST", path: "/abandoned", headers: { host: ep.host } });
    await eventually(
      () => s.connections.length === 1 && s.open() === 0,
      "the upstream closed the connection",
    );
    // One more turn of the event loop lets a rejection surface: Deno fails the test on an unhandled one.
    await new Promise((r) => setTimeout(r, 0));
  });
});
