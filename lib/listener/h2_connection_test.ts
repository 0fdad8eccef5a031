/**
 * The HTTP/2 server connection against a scripted client on an in-memory socket: the test decides
 * which bytes arrive in which chunk (split at every byte boundary) and sees every frame the server
 * writes. Hostile cases: rapid reset, CONTINUATION flood, a client that never grants window, too
 * many streams, malformed requests, and a client that floods PINGs without reading.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Duplex } from "node:stream";
import {
  CLIENT_PREFACE,
  encodeFrame,
  encodePing,
  encodeRst,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  parseGoaway,
  parseRst,
  Setting,
} from "../http2/frame.ts";
import { type HeaderField, HpackDecoder, HpackEncoder } from "../http2/hpack.ts";
import { type H2ServeOptions, H2ServerConnection } from "./h2_connection.ts";
import type { ServerRequest } from "../http/request.ts";
import { BodyBudget } from "../http/body_budget.ts";
import type { ServerResponse } from "../http/response.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The client side of an in-memory socket. `hold`: the client stops reading (writes never complete). */
class Client {
  frames: Frame[] = [];
  ended = false;
  destroyed = false;
  held: (() => void)[] = [];
  hold = false;
  /** Header blocks decoded as they arrive (the HPACK table must see each once, in order). */
  #heads = new Map<number, HeaderField[][]>();
  #reader = new FrameReader(1 << 24, (f) => {
    const frame = { ...f, payload: new Uint8Array(f.payload) };
    this.frames.push(frame);
    if (f.type === FrameType.HEADERS) {
      const list = this.#heads.get(f.stream) ?? [];
      list.push(this.decoder.decode(frame.payload));
      this.#heads.set(f.stream, list);
    }
  });
  encoder = new HpackEncoder();
  decoder = new HpackDecoder();
  sock: Duplex;

  constructor() {
    this.sock = new Duplex({
      read() {},
      highWaterMark: 16 * 1024,
      write: (chunk: Uint8Array, _e, cb) => {
        this.#reader.feed(chunk);
        if (this.hold) this.held.push(cb);
        else cb();
      },
      final: (cb) => {
        this.ended = true;
        cb();
      },
      destroy: (_e, cb) => {
        this.destroyed = true;
        cb(null);
      },
    });
  }

  send(b: Uint8Array) {
    this.sock.push(b);
  }

  of(type: number, stream?: number): Frame[] {
    return this.frames.filter((f) => f.type === type && (stream === undefined || f.stream === stream));
  }

  headers(stream: number, fields: HeaderField[], flags: number = Flag.END_HEADERS | Flag.END_STREAM) {
    return encodeFrame(FrameType.HEADERS, flags, stream, this.encoder.encode(fields));
  }

  /** The decoded header blocks the server sent on `stream`. */
  answers(stream: number): HeaderField[][] {
    return this.#heads.get(stream) ?? [];
  }

  body(stream: number): string {
    return this.of(FrameType.DATA, stream).map((f) => dec.decode(f.payload)).join("");
  }

  goaway() {
    const g = this.of(FrameType.GOAWAY);
    return g.length ? parseGoaway(g[0]) : undefined;
  }
}

const GET = (path: string, extra: HeaderField[] = []): HeaderField[] => [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", path],
  [":authority", "lite"],
  ...extra,
];

const tick = () => new Promise((r) => setTimeout(r, 0));
async function until(what: string, cond: () => boolean) {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

function serve(
  onRequest: (req: ServerRequest, res: ServerResponse) => void,
  opts: Partial<H2ServeOptions> = {},
) {
  const c = new Client();
  const conn = new H2ServerConnection(c.sock, {
    headerTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    maxRequestBodyBytes: 1 << 20,
    errorBody: (status, message) => ({ contentType: "text/plain", body: `${status} ${message}` }),
    onRequest,
    ...opts,
  });
  const start = () => {
    c.send(CLIENT_PREFACE);
    c.send(encodeSettings([]));
  };
  return { c, conn, start, close: () => c.sock.destroy() };
}

function hello(req: ServerRequest, res: ServerResponse) {
  res.writeHead(200, { "content-type": "text/plain", "x-auth": String(req.headers.authorization ?? "") });
  res.end(`hello ${req.method} ${req.url} host=${req.headers.host} v=${req.httpVersion}`);
}

Deno.test("a request split at every byte boundary is answered whole", async () => {
  const probe = new HpackEncoder();
  const bytes = concat([
    CLIENT_PREFACE,
    encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]),
    encodeFrame(
      FrameType.HEADERS,
      Flag.END_HEADERS | Flag.END_STREAM,
      1,
      probe.encode(GET("/api/v1/pods", [["authorization", "Bearer t1"]])),
    ),
  ]);
  for (let cut = 0; cut <= bytes.byteLength; cut++) {
    const { c, close } = serve(hello);
    // Each cut: two chunks split there; and once, every byte alone.
    const chunks = cut === bytes.byteLength ? [...bytes].map((b) => Uint8Array.of(b)) : [
      bytes.subarray(0, cut),
      bytes.subarray(cut),
    ];
    for (const ch of chunks) if (ch.byteLength) c.send(ch);
    await until("the answer", () => c.of(FrameType.DATA, 1).some((f) => f.flags & Flag.END_STREAM));
    const [head] = c.answers(1);
    assertEquals(head[0], [":status", "200"]);
    assert(head.some(([n, v]) => n === "x-auth" && v === "Bearer t1"));
    assertEquals(c.body(1), "hello GET /api/v1/pods host=lite v=2.0");
    close();
  }
});

Deno.test("streams are served concurrently; beyond the announced limit they are refused", async () => {
  const open: ServerResponse[] = [];
  const { c, start, close } = serve((_req, res) => {
    res.writeHead(200);
    res.flushHeaders();
    open.push(res);
  }, { maxConcurrentStreams: 2 });
  start();
  const settings = () => c.of(FrameType.SETTINGS).find((f) => !(f.flags & Flag.ACK));
  await until("SETTINGS", () => !!settings());
  const p = new DataView(settings()!.payload.buffer);
  assertEquals([p.getUint16(0), p.getUint32(2)], [Setting.MAX_CONCURRENT_STREAMS, 2]);
  c.send(c.headers(1, GET("/a")));
  c.send(c.headers(3, GET("/b")));
  c.send(c.headers(5, GET("/c")));
  await until(
    "two heads and a refusal",
    () => open.length === 2 && c.of(FrameType.RST_STREAM, 5).length === 1,
  );
  assertEquals(parseRst(c.of(FrameType.RST_STREAM, 5)[0]), ErrorCode.REFUSED_STREAM);
  open[0].write("one");
  open[1].end("two");
  await until("both bodies", () => c.body(1) === "one" && c.body(3) === "two");
  // Stream 3 ended: room for another.
  c.send(c.headers(7, GET("/d")));
  await until("a third stream", () => open.length === 3);
  close();
});

Deno.test("rapid reset: streams opened and reset past the budget end the connection with GOAWAY", async () => {
  let handled = 0;
  const { c, start } = serve((_req, res) => {
    handled++;
    res.writeHead(200);
    res.flushHeaders();
  }, { resetBurst: 50, resetsPerSecond: 1 });
  start();
  for (let id = 1; id < 2 * 1000; id += 2) {
    c.send(concat([c.headers(id, GET("/x")), encodeRst(id, ErrorCode.CANCEL)]));
  }
  await until("GOAWAY", () => !!c.goaway());
  assertEquals(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
  await until("the connection ended", () => c.ended || c.destroyed);
  assert(handled <= 52, `handlers run: ${handled}`);
});

Deno.test("CONTINUATION flood: endless CONTINUATION frames end the connection with GOAWAY", async () => {
  let handled = 0;
  const { c, start } = serve(() => handled++);
  start();
  c.send(encodeFrame(FrameType.HEADERS, 0, 1, c.encoder.encode(GET("/x"))));
  for (let i = 0; i < 1000 && !c.goaway(); i++) {
    c.send(encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(0)));
    if (i % 50 === 0) await tick();
  }
  await until("GOAWAY", () => !!c.goaway());
  assertEquals(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
  await until("the connection ended", () => c.ended || c.destroyed);
  assertEquals(handled, 0);
});

Deno.test("CONTINUATION flood by bytes: a header block over the bound ends the connection", async () => {
  const { c, start } = serve(() => {}, { maxHeaderListSize: 16 * 1024 });
  start();
  c.send(encodeFrame(FrameType.HEADERS, 0, 1, c.encoder.encode(GET("/x"))));
  for (let i = 0; i < 10 && !c.goaway(); i++) {
    c.send(encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(8000).fill(0x41)));
    await tick();
  }
  await until("GOAWAY", () => !!c.goaway());
  assertEquals(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
});

Deno.test("a client that never grants window: DATA stops at its window and the writer sees backpressure", async () => {
  let res!: ServerResponse;
  let drains = 0;
  let writesAccepted = 0;
  let closed = false;
  const { c, start, close } = serve((_req, r) => {
    res = r;
    r.writeHead(200);
    r.on("drain", () => drains++);
    r.on("close", () => closed = true);
    // Write as the relay does: until write() says stop.
    while (r.write(new Uint8Array(16 * 1024))) writesAccepted++;
  });
  start();
  c.send(c.headers(1, GET("/big")));
  await until(
    "the window spent",
    () => c.of(FrameType.DATA, 1).reduce((n, f) => n + f.payload.byteLength, 0) === 65_535,
  );
  for (let i = 0; i < 20; i++) await tick();
  assertEquals(c.of(FrameType.DATA, 1).reduce((n, f) => n + f.payload.byteLength, 0), 65_535);
  assertEquals(drains, 0);
  assert(res.writableLength <= 128 * 1024, `buffered in the response: ${res.writableLength}`);
  // Granting window lets it go on.
  c.send(encodeWindowUpdate(1, 1 << 20));
  c.send(encodeWindowUpdate(0, 1 << 20));
  await until("a drain", () => drains > 0);
  // The client gives up on the stream: the handler is told.
  c.send(encodeRst(1, ErrorCode.CANCEL));
  await until("the response closed", () => closed);
  assert(writesAccepted < 10);
  close();
});

Deno.test("a client that stops reading while it floods PINGs is dropped", async () => {
  const { c, start } = serve(() => {});
  start();
  c.hold = true;
  const ping = encodePing(new Uint8Array(8));
  for (let i = 0; i < 200_000 && !c.destroyed; i++) {
    c.send(ping);
    if (i % 1000 === 0) await tick();
  }
  await until("the connection destroyed", () => c.destroyed);
});

Deno.test("request bodies arrive through the request stream; too large ones get 413", async () => {
  const { c, start, close } = serve((req, res) => {
    const parts: Uint8Array[] = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", () => res.end(`got ${parts.reduce((n, p) => n + p.byteLength, 0)}`));
  }, { maxRequestBodyBytes: 100_000 });
  start();
  const post = (len: number) =>
    [
      [":method", "POST"],
      [":scheme", "https"],
      [":path", "/p"],
      ["content-length", String(len)],
    ] as HeaderField[];
  c.send(c.headers(1, post(50_000), Flag.END_HEADERS));
  for (let o = 0; o < 50_000; o += 10_000) {
    c.send(
      encodeFrame(FrameType.DATA, o + 10_000 >= 50_000 ? Flag.END_STREAM : 0, 1, new Uint8Array(10_000)),
    );
  }
  await until("the answer", () => c.body(1) === "got 50000");
  c.send(c.headers(3, post(200_000), Flag.END_HEADERS));
  await until("a 413", () => c.answers(3).length === 1);
  assertEquals(c.answers(3)[0][0], [":status", "413"]);
  close();
});

Deno.test("request bodies held unread count in the shared budget: past it, 503 for that stream", async () => {
  const budget = new BodyBudget(100_000);
  const { c, start, close } = serve(() => {/* never reads the body */}, { bodyBudget: budget });
  start();
  const post: HeaderField[] = [[":method", "POST"], [":scheme", "https"], [":path", "/p"]];
  c.send(c.headers(1, post, Flag.END_HEADERS));
  for (let i = 0; i < 4; i++) c.send(encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(15_000)));
  c.send(c.headers(3, post, Flag.END_HEADERS));
  for (let i = 0; i < 4; i++) c.send(encodeFrame(FrameType.DATA, 0, 3, new Uint8Array(15_000)));
  await until("a 503", () => c.answers(3).length === 1);
  assertEquals(c.answers(3)[0][0], [":status", "503"]);
  assertEquals(c.answers(1).length, 0);
  assertEquals(budget.held, 60_000);
  // The stream that went away gives its bytes back.
  c.send(encodeRst(1, ErrorCode.CANCEL));
  await until("the budget released", () => budget.held === 0);
  close();
});

Deno.test("malformed requests and CONNECT are refused per stream; the connection carries on", async () => {
  const { c, start, close } = serve(hello);
  start();
  c.send(c.headers(1, [...GET("/x"), ["Upper", "1"]]));
  c.send(c.headers(3, [...GET("/x"), ["connection", "keep-alive"]]));
  c.send(
    c.headers(5, [[":method", "CONNECT"], [":protocol", "websocket"], [":scheme", "https"], [":path", "/x"]]),
  );
  c.send(c.headers(7, [[":method", "CONNECT"], [":authority", "example:443"]]));
  c.send(c.headers(9, GET("/ok")));
  await until("answers", () => c.body(9).startsWith("hello") && c.of(FrameType.RST_STREAM).length >= 3);
  for (const id of [1, 3, 5]) {
    assertEquals(parseRst(c.of(FrameType.RST_STREAM, id)[0]), ErrorCode.PROTOCOL_ERROR);
  }
  await until("CONNECT answered", () => c.answers(7).length === 1);
  assertEquals(c.answers(7)[0][0], [":status", "405"]);
  assertEquals(c.goaway(), undefined);
  close();
});

Deno.test("not the preface: the connection ends", async () => {
  const { c } = serve(hello);
  c.send(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await until("GOAWAY", () => !!c.goaway());
  assertEquals(c.goaway()!.code, ErrorCode.PROTOCOL_ERROR);
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
