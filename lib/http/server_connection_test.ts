/**
 * The connection loop over a real loopback TCP socket (no TLS): response framing, HEAD, handler
 * failures, unread bodies, Connection: close, HTTP/1.0, backpressure on request bodies.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import net from "node:net";
import { PassThrough } from "node:stream";
import { connectionDeadlines, type ConnectionOptions, serveConnection } from "./server_connection.ts";
import { Timers } from "../timers.ts";
import type { ServerRequest } from "./request.ts";
import type { ServerResponse } from "./response.ts";

const dec = new TextDecoder();

type Handler = (req: ServerRequest, res: ServerResponse) => void;

async function withServer(
  handler: Handler,
  fn: (port: number) => Promise<void>,
  extra: Partial<ConnectionOptions> = {},
) {
  const sockets = new Set<net.Socket>();
  const timers = new Timers();
  const timeouts = { headerTimeoutMs: 5000, idleTimeoutMs: 5000, ...extra };
  const deadlines = connectionDeadlines(timers, timeouts);
  const server = net.createServer((s) => {
    sockets.add(s);
    serveConnection(s, {
      deadlines,
      headerTimeoutMs: 5000,
      idleTimeoutMs: 5000,
      maxRequestBodyBytes: 1 << 20,
      errorBody: (status, message) => ({ contentType: "text/plain", body: `${status} ${message}` }),
      onRequest: handler,
      onUpgrade: (_req, socket, head) => {
        socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
        socket.write(head);
        socket.pipe(socket);
      },
      ...extra,
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    await fn((server.address() as net.AddressInfo).port);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    timers.close();
  }
}

/** Sends `text`, reads until `done(received)` or the close; bounded. */
function exchange(port: number, text: string, done: (s: string) => boolean = () => false): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const s = net.connect(port, "127.0.0.1", () => s.write(text));
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`timed out; received so far: ${JSON.stringify(got)}`));
    }, 10_000);
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    s.on("data", (c: Uint8Array) => {
      got += dec.decode(c);
      if (done(got)) finish();
    });
    s.on("close", finish);
    s.on("error", () => {});
  });
}

const count = (s: string, sub: string) => s.split(sub).length - 1;

Deno.test("framing: end(body) gets a Content-Length and one answer; writes get chunked", async () => {
  await withServer((req, res) => {
    if (req.url === "/whole") return void res.end("hello");
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("a");
    res.write("bc");
    res.end();
  }, async (port) => {
    const out = await exchange(
      port,
      "GET /whole HTTP/1.1\r\nHost: x\r\n\r\nGET /parts HTTP/1.1\r\nHost: x\r\n\r\n",
      (s) => s.endsWith("0\r\n\r\n"),
    );
    const [first, second] = out.split(/(?=HTTP\/1\.1 )/);
    assert(/content-length: 5\r\n/i.test(first) && first.endsWith("\r\n\r\nhello"), first);
    assert(/transfer-encoding: chunked\r\n/i.test(second), second);
    assert(second.endsWith("\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"), second);
  });
});

Deno.test("HEAD: headers only, the Content-Length kept; 204 without body framing", async () => {
  await withServer((req, res) => {
    if (req.url === "/204") {
      res.writeHead(204);
      return void res.end();
    }
    res.writeHead(200, { "content-length": 5 });
    res.end(req.method === "HEAD" ? undefined : "hello");
  }, async (port) => {
    const out = await exchange(
      port,
      "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
      (s) => s.endsWith("hello"),
    );
    const parts = out.split(/(?=HTTP\/1\.1 )/);
    assertEquals(parts.length, 3);
    assert(/content-length: 5\r\n/i.test(parts[0]) && parts[0].endsWith("\r\n\r\n"), parts[0]);
    assert(!/content-length|transfer-encoding/i.test(parts[1]), parts[1]);
    assert(parts[2].endsWith("\r\n\r\nhello"));
  });
});

Deno.test("a piped stream is a valid response body; a short Content-Length body closes the connection", async () => {
  await withServer((req, res) => {
    const src = new PassThrough();
    if (req.url === "/short") res.writeHead(200, { "content-length": 10 });
    else res.writeHead(200, { "content-length": 6 });
    src.pipe(res);
    src.write("abc");
    setTimeout(() => src.end("def"), 20);
  }, async (port) => {
    const ok = await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", (s) => s.endsWith("abcdef"));
    assert(ok.endsWith("\r\n\r\nabcdef"));
    const short = await exchange(
      port,
      "GET /short HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assertEquals(count(short, "HTTP/1.1 200"), 1, "the connection closed after the short body");
  });
});

Deno.test("a handler that throws gets a 500; the connection goes on", async () => {
  await withServer((req, res) => {
    if (req.url === "/boom") throw new Error("boom");
    res.end("fine");
  }, async (port) => {
    const out = await exchange(
      port,
      "GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
      (s) => s.endsWith("fine"),
    );
    assert(out.startsWith("HTTP/1.1 500 "), out);
    assert(out.includes("internal error: boom"));
    assert(out.endsWith("fine"));
  });
});

Deno.test("Connection: close and HTTP/1.0 end the connection after the answer", async () => {
  await withServer((_req, res) => {
    res.writeHead(200, {});
    res.write("streamed");
    res.end();
  }, async (port) => {
    const a = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assertEquals(count(a, "HTTP/1.1 200"), 1);
    assert(/connection: close/i.test(a));
    const b = await exchange(port, "GET / HTTP/1.0\r\n\r\n");
    assert(!/transfer-encoding/i.test(b) && b.endsWith("\r\n\r\nstreamed"), "HTTP/1.0: close-delimited");
  });
});

Deno.test("an unread small body is skipped, the next request is served", async () => {
  await withServer((req, res) => res.end(`${req.method} ${req.url}`), async (port) => {
    const out = await exchange(
      port,
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n" +
        "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n",
      (s) => s.endsWith("GET /d"),
    );
    assertEquals(out.match(/(GET|POST|PUT) \/[a-d](?=HTTP|$)/g), ["POST /a", "GET /b", "PUT /c", "GET /d"]);
  });
});

Deno.test("request bodies are streamed with backpressure and arrive whole", async () => {
  const size = 3 << 20;
  await withServer((req, res) => {
    let n = 0;
    req.on("data", (c: Uint8Array) => {
      n += c.length;
      // A slow consumer: the socket is paused while it catches up.
      req.pause();
      setTimeout(() => req.resume(), 1);
    });
    req.on("end", () => res.end(`got ${n}`));
  }, async (port) => {
    const body = "x".repeat(size);
    const out = await exchange(
      port,
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n${body}`,
      (s) => s.includes("got "),
    );
    assert(out.endsWith(`got ${size}`), out.slice(-50));
  }, { maxRequestBodyBytes: 4 << 20 });
});

Deno.test("upgrade: the handler gets the socket and the bytes after the head", async () => {
  await withServer(() => {}, async (port) => {
    const out = await exchange(
      port,
      "GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly-bytes",
      (s) => s.endsWith("early-bytes"),
    );
    assert(out.startsWith("HTTP/1.1 101 "));
    assert(out.endsWith("\r\n\r\nearly-bytes"));
  });
});

Deno.test("protocol errors get their status and close: 400, 414, 431, 505", async () => {
  await withServer((_req, res) => res.end("x"), async (port) => {
    const cases: [string, string][] = [
      ["GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "400"],
      [`GET /${"a".repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, "414"],
      [`GET / HTTP/1.1\r\nHost: x\r\n${"X-A: b\r\n".repeat(600)}\r\n`, "431"],
      ["GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"],
      ["GET / HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n", "400"],
    ];
    for (const [text, status] of cases) {
      const out = await exchange(port, text);
      assert(out.startsWith(`HTTP/1.1 ${status} `), `${status}: ${out.slice(0, 60)}`);
      assert(/connection: close/i.test(out));
    }
  });
});

Deno.test("timeouts: a silent new connection is closed without an answer; a started head gets a 408", async () => {
  await withServer((_req, res) => res.end("x"), async (port) => {
    const t0 = performance.now();
    const silent = await exchange(port, "");
    assertEquals(silent, "", "nothing is sent to a connection that sent nothing");
    assert(performance.now() - t0 >= 250, "not before the header timeout");
    const slow = await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n");
    assert(slow.startsWith("HTTP/1.1 408 "), slow);
    // An idle keep-alive connection is closed after the idle timeout, without an answer.
    const idle = await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assertEquals(count(idle, "HTTP/1.1 "), 1);
  }, { headerTimeoutMs: 300, idleTimeoutMs: 600 });
});

Deno.test("random bytes never break the server: each connection gets an answer or a close", async () => {
  let seed = 99;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const pieces = [
    "GET / HTTP/1.1\r\n",
    "POST /x HTTP/1.1\r\n",
    "Host: x\r\n",
    "Content-Length: 3\r\n",
    "Content-Length: 99\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "\r\n",
    "\n",
    "\r",
    "3\r\nabc\r\n",
    "0\r\n\r\n",
    "zz\r\n",
    "X: \u0000\r\n",
    " folded\r\n",
  ];
  await withServer((req, res) => {
    if (req.url === "/x") req.on("data", () => {}).on("end", () => res.end("done"));
    else res.end("ok");
  }, async (port) => {
    for (let n = 0; n < 150; n++) {
      let text = "";
      const k = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < k; i++) text += pieces[Math.floor(rand() * pieces.length)];
      // Bounded (10 s): the server answers, or closes at the latest after its header or idle timeout.
      const out = await exchange(port, text);
      assert(out === "" || out.startsWith("HTTP/1.1 "), JSON.stringify(out));
    }
  }, { headerTimeoutMs: 150, idleTimeoutMs: 150 });
});
