/**
 * The HTTP/2 client connection against a scripted server on an in-memory socket: the test decides
 * exactly which bytes arrive in which chunk (split at every byte boundary), and sees every frame
 * the client writes. Hostile cases: tiny windows, a reader that stops, CONTINUATION floods, RST_STREAM
 * and GOAWAY mid-answer, a falling stream limit, a PING never answered.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Duplex } from "node:stream";
import {
  encodeFrame,
  encodeGoaway,
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
  parseWindowUpdate,
  Setting,
} from "../../http2/frame.ts";
import { type HeaderField, HpackDecoder, HpackEncoder } from "../../http2/hpack.ts";
import { H2Connection, type H2Options } from "./connection.ts";
import type { ExchangeHandlers, RequestSpec } from "../connection.ts";
import type { UpstreamResponse } from "../response.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The server side of an in-memory socket: frames the client wrote, and a way to send bytes. */
class Server {
  frames: Frame[] = [];
  ended = false;
  #preface = 24;
  #reader = new FrameReader(1 << 24, (f) => this.frames.push({ ...f, payload: f.payload.slice() }));
  encoder = new HpackEncoder();
  decoder = new HpackDecoder();
  sock: Duplex;

  constructor() {
    this.sock = new Duplex({
      read() {},
      write: (chunk: Uint8Array, _e, cb) => {
        let c = chunk;
        if (this.#preface > 0) {
          const n = Math.min(this.#preface, c.byteLength);
          this.#preface -= n;
          c = c.subarray(n);
        }
        this.#reader.feed(c);
        cb();
      },
      final: (cb) => {
        this.ended = true;
        cb();
      },
    });
  }

  push(b: Uint8Array) {
    this.sock.push(b);
  }

  of(type: number, stream?: number): Frame[] {
    return this.frames.filter((f) => f.type === type && (stream === undefined || f.stream === stream));
  }

  headers(stream: number, fields: HeaderField[], flags: number = Flag.END_HEADERS): Uint8Array {
    return encodeFrame(FrameType.HEADERS, flags, stream, this.encoder.encode(fields));
  }
}

function connect(
  opts: H2Options = {},
  settings: [number, number][] = [[Setting.MAX_CONCURRENT_STREAMS, 100]],
) {
  const srv = new Server();
  const conn = new H2Connection(srv.sock, { settingsTimeoutMs: 5_000, ...opts });
  srv.push(encodeSettings(settings));
  return { srv, conn };
}

const GET: RequestSpec = {
  method: "GET",
  path: "/api/v1/pods",
  headers: { host: "cloud:443", accept: "*/*" },
};

interface Outcome {
  response: Promise<UpstreamResponse>;
  released: Promise<void>;
  cancel(): void;
}

function send(conn: H2Connection, spec: RequestSpec = GET): Outcome {
  let resolveReleased!: () => void;
  const released = new Promise<void>((r) => (resolveReleased = r));
  let cancel = () => {};
  const response = new Promise<UpstreamResponse>((resolve, reject) => {
    const h: ExchangeHandlers = { response: resolve, error: reject, released: resolveReleased };
    cancel = conn.request(spec, h).cancel;
  });
  response.catch(() => {});
  return { response, released, cancel };
}

async function body(res: UpstreamResponse): Promise<string> {
  let s = "";
  for await (const c of res) s += dec.decode(c as Uint8Array);
  return s;
}

/** Waits for a condition on the event loop, bounded, naming what it waited for. */
async function until(what: string, cond: () => boolean, ms = 5_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

Deno.test("a request goes out as HEADERS with pseudo-headers first and no connection-specific fields", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  send(conn, { ...GET, headers: { ...GET.headers, connection: "keep-alive", authorization: "Bearer t" } });
  const h = srv.of(FrameType.HEADERS)[0];
  assertEquals(h.stream, 1);
  assert(h.flags & Flag.END_STREAM);
  assertEquals(srv.decoder.decode(h.payload), [
    [":method", "GET"],
    [":scheme", "https"],
    [":authority", "cloud:443"],
    [":path", "/api/v1/pods"],
    ["accept", "*/*"],
    ["authorization", "Bearer t"],
  ]);
  // Our SETTINGS were acknowledged; theirs too.
  assert(srv.of(FrameType.SETTINGS).some((f) => f.flags & Flag.ACK));
  conn.destroy();
});

Deno.test("an answer split at every byte boundary (CONTINUATION, padding, two DATA frames) reads the same", async () => {
  // The server's bytes after its SETTINGS: a head in HEADERS + 2 CONTINUATION, padded DATA, DATA.
  const e = new HpackEncoder();
  const block = e.encode([
    [":status", "200"],
    ["content-type", "application/json"],
    ["content-length", "11"],
    [
      "x-long",
      "v".repeat(40),
    ],
  ]);
  const script = concat([
    encodeFrame(FrameType.HEADERS, 0, 1, block.subarray(0, 5)),
    encodeFrame(FrameType.CONTINUATION, 0, 1, block.subarray(5, 9)),
    encodeFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(9)),
    encodeFrame(
      FrameType.DATA,
      Flag.PADDED,
      1,
      concat([Uint8Array.of(3), enc.encode("hello "), new Uint8Array(3)]),
    ),
    encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, enc.encode("world")),
  ]);
  for (let i = 0; i <= script.byteLength; i++) {
    const { srv, conn } = connect();
    await conn.ready;
    const out = send(conn);
    srv.push(script.subarray(0, i));
    srv.push(script.subarray(i));
    const res = await out.response;
    assertEquals(res.statusCode, 200);
    assertEquals(res.headers["content-type"], "application/json");
    assertEquals(await body(res), "hello world");
    assert(res.complete);
    await out.released;
    assertEquals(conn.streams, 0);
    conn.destroy();
  }
});

Deno.test("a small whole answer is complete when handed over (the relay's one-write path)", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const out = send(conn);
  srv.push(concat([
    srv.headers(1, [[":status", "200"], ["content-length", "2"]]),
    encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, enc.encode("{}")),
  ]));
  const res = await out.response;
  assert(res.complete);
  assertEquals(dec.decode(res.readWhole()), "{}");
  conn.destroy();
});

Deno.test("a tiny send window: the body goes out only as the server grants window", async () => {
  const { srv, conn } = connect({}, [[Setting.INITIAL_WINDOW_SIZE, 10], [
    Setting.MAX_CONCURRENT_STREAMS,
    10,
  ]]);
  await conn.ready;
  const payload = enc.encode("x".repeat(100));
  send(conn, { method: "POST", path: "/p", headers: { host: "h" }, body: payload });
  const sent = () => srv.of(FrameType.DATA, 1).reduce((n, f) => n + f.payload.byteLength, 0);
  await until("10 bytes", () => sent() === 10);
  srv.push(encodeWindowUpdate(1, 50));
  await until("60 bytes", () => sent() === 60);
  assert(!srv.of(FrameType.DATA, 1).some((f) => f.flags & Flag.END_STREAM));
  srv.push(encodeWindowUpdate(1, 1000));
  await until(
    "all 100 bytes and END_STREAM",
    () => sent() === 100 && srv.of(FrameType.DATA, 1).at(-1)!.flags === 1,
  );
  conn.destroy();
});

Deno.test("a reader that stops: no window is granted back, and the server cannot send past it", async () => {
  const W = 128 * 1024;
  const { srv, conn } = connect({ streamWindow: W, connectionWindow: 1 << 20 });
  await conn.ready;
  const out = send(conn);
  srv.push(srv.headers(1, [[":status", "200"]]));
  const res = await out.response;
  const chunk = new Uint8Array(16_384);
  for (let i = 0; i < 8; i++) srv.push(encodeFrame(FrameType.DATA, 0, 1, chunk)); // exactly W
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(srv.of(FrameType.WINDOW_UPDATE, 1).length, 0, "no stream window granted while nobody reads");
  // Now read: the window comes back.
  let got = 0;
  res.on("data", (c: Uint8Array) => (got += c.byteLength));
  await until("all bytes read", () => got === W);
  await until("stream WINDOW_UPDATE", () => srv.of(FrameType.WINDOW_UPDATE, 1).length > 0);
  const granted = srv.of(FrameType.WINDOW_UPDATE, 1).reduce((n, f) => n + parseWindowUpdate(f), 0);
  assert(granted > 0 && granted <= W, `granted ${granted}`);
  conn.destroy();
});

Deno.test("DATA beyond the granted stream window resets that stream only (FLOW_CONTROL_ERROR)", async () => {
  const { srv, conn } = connect({ streamWindow: 128 * 1024 });
  await conn.ready;
  const a = send(conn);
  const b = send(conn);
  srv.push(concat([srv.headers(1, [[":status", "200"]]), srv.headers(3, [[":status", "200"]])]));
  const ra = await a.response;
  const rb = await b.response;
  let aborted = false;
  ra.on("aborted", () => (aborted = true));
  ra.on("error", () => {});
  for (let i = 0; i < 9; i++) srv.push(encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(16_000)));
  await until("stream 1 reset", () => srv.of(FrameType.RST_STREAM, 1).length === 1);
  assertEquals(parseRst(srv.of(FrameType.RST_STREAM, 1)[0]), ErrorCode.FLOW_CONTROL_ERROR);
  await until("answer 1 aborted", () => aborted);
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 3, enc.encode("ok")));
  assertEquals(await body(rb), "ok");
  assert(!conn.closed);
  conn.destroy();
});

Deno.test("RST_STREAM mid-watch aborts only that answer; another stream finishes", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const watch = send(conn, { ...GET, path: "/api/v1/pods?watch=1" });
  const get = send(conn);
  srv.push(srv.headers(1, [[":status", "200"]]));
  const w = await watch.response;
  let aborted = false;
  w.on("aborted", () => (aborted = true));
  w.on("error", () => {});
  w.resume();
  srv.push(encodeFrame(FrameType.DATA, 0, 1, enc.encode('{"type":"ADDED"}\n')));
  srv.push(encodeRst(1, ErrorCode.INTERNAL_ERROR));
  await until("watch aborted", () => aborted);
  srv.push(srv.headers(3, [[":status", "200"], ["content-length", "2"]]));
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 3, enc.encode("{}")));
  assertEquals(await body(await get.response), "{}");
  assert(!conn.closed);
  // A reset before any answer is an error for that caller; REFUSED_STREAM is marked retryable.
  const refused = send(conn);
  srv.push(encodeRst(5, ErrorCode.REFUSED_STREAM));
  const err = await refused.response.then(() => undefined, (e) => e);
  assertEquals((err as { retryable: boolean }).retryable, true);
  conn.destroy();
});

Deno.test("GOAWAY mid-watch: streams above last-stream-id fail as retryable, the watch below it goes on", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const watch = send(conn, { ...GET, path: "/api/v1/pods?watch=1" });
  const late = send(conn);
  srv.push(srv.headers(1, [[":status", "200"]]));
  const w = await watch.response;
  srv.push(encodeGoaway(1, ErrorCode.NO_ERROR, "server shutting down"));
  const err = await late.response.then(() => undefined, (e) => e);
  assertEquals((err as { retryable: boolean }).retryable, true);
  assertEquals(conn.capacity, 0, "no new streams after GOAWAY");
  srv.push(encodeFrame(FrameType.DATA, 0, 1, enc.encode("event\n")));
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, enc.encode("last\n")));
  assertEquals(await body(w), "event\nlast\n");
  // The last stream ended: the connection closes itself.
  await until("socket ended", () => srv.ended);
  conn.destroy();
});

Deno.test("a server that lowers MAX_CONCURRENT_STREAMS: no stream opens until below the new limit", async () => {
  const { srv, conn } = connect({}, [[Setting.MAX_CONCURRENT_STREAMS, 2]]);
  await conn.ready;
  assertEquals(conn.capacity, 2);
  const a = send(conn);
  const b = send(conn);
  assertEquals(conn.capacity, 0);
  srv.push(encodeSettings([[Setting.MAX_CONCURRENT_STREAMS, 1]]));
  await until(
    "settings applied",
    () => srv.of(FrameType.SETTINGS).filter((f) => f.flags & Flag.ACK).length === 2,
  );
  let raised = 0;
  conn.onCapacity = () => raised++;
  srv.push(srv.headers(1, [[":status", "204"]], Flag.END_HEADERS | Flag.END_STREAM));
  await a.released;
  assertEquals(conn.capacity, 0, "still at the lowered limit with one stream open");
  srv.push(srv.headers(3, [[":status", "204"]], Flag.END_HEADERS | Flag.END_STREAM));
  await b.released;
  assertEquals(conn.capacity, 1);
  assert(raised > 0);
  conn.destroy();
});

Deno.test("a PING never answered: the connection is declared dead and a watch on it is aborted", async () => {
  const { srv, conn } = connect({ readIdleMs: 100, pingTimeoutMs: 200 });
  await conn.ready;
  const watch = send(conn, { ...GET, path: "/api/v1/pods?watch=1" });
  srv.push(srv.headers(1, [[":status", "200"]]));
  const w = await watch.response;
  let aborted = false;
  w.on("aborted", () => (aborted = true));
  w.on("error", () => {});
  await until("a PING", () => srv.of(FrameType.PING).length > 0);
  await until("watch aborted", () => aborted);
  assert(conn.closed);
});

Deno.test("a PING answered keeps the connection", async () => {
  const { srv, conn } = connect({ readIdleMs: 50, pingTimeoutMs: 300 });
  await conn.ready;
  for (let n = 1; n <= 3; n++) {
    await until(`PING ${n}`, () => srv.of(FrameType.PING).length >= n);
    srv.push(encodePing(srv.of(FrameType.PING)[n - 1].payload, true));
  }
  assert(!conn.closed);
  conn.destroy();
});

Deno.test("the server's PING is answered", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  srv.push(encodePing(enc.encode("12345678")));
  await until("PING ACK", () => srv.of(FrameType.PING).some((f) => f.flags & Flag.ACK));
  conn.destroy();
});

Deno.test("CONTINUATION flood and oversized header blocks end the connection (ENHANCE_YOUR_CALM)", async () => {
  for (const flood of [true, false]) {
    const { srv, conn } = connect({ maxHeaderListSize: 4096 });
    await conn.ready;
    const out = send(conn);
    srv.push(encodeFrame(FrameType.HEADERS, 0, 1, srv.encoder.encode([[":status", "200"]])));
    if (flood) { for (let i = 0; i < 300; i++) srv.push(encodeFrame(FrameType.CONTINUATION, 0, 1)); }
    else {for (let i = 0; i < 3; i++) {
        srv.push(encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(2000)));
      }}
    const err = await out.response.then(() => undefined, (e) => e);
    assert(err instanceof Error);
    await until("closed", () => conn.closed);
    const g = srv.of(FrameType.GOAWAY);
    assertEquals(parseGoaway(g[0]).code, ErrorCode.ENHANCE_YOUR_CALM);
  }
});

Deno.test("protocol errors end the connection with GOAWAY: interleaved header block, PUSH_PROMISE, unknown stream", async () => {
  const cases: [string, (s: Server) => Uint8Array][] = [
    ["interleaved", (s) =>
      concat([
        encodeFrame(FrameType.HEADERS, 0, 1, s.encoder.encode([[":status", "200"]])),
        encodeFrame(FrameType.DATA, 0, 1, enc.encode("x")),
      ])],
    ["push", () => encodeFrame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, new Uint8Array(4))],
    ["never opened", (s) => s.headers(7, [[":status", "200"]])],
    ["bad hpack", () => encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Uint8Array.of(0x80))],
  ];
  for (const [name, bytes] of cases) {
    const { srv, conn } = connect();
    await conn.ready;
    const out = send(conn);
    srv.push(bytes(srv));
    const err = await out.response.then(() => undefined, (e) => e);
    assert(err instanceof Error, name);
    await until(`${name}: closed`, () => conn.closed);
    assert(srv.of(FrameType.GOAWAY).length === 1, name);
  }
});

Deno.test("a malformed answer (no :status, body longer than content-length) fails only its stream", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const a = send(conn);
  srv.push(srv.headers(1, [["content-type", "x"]]));
  assert((await a.response.then(() => undefined, (e) => e)) instanceof Error);
  const b = send(conn);
  srv.push(srv.headers(3, [[":status", "200"], ["content-length", "1"]]));
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 3, enc.encode("toolong")));
  // Small answers are handed over whole: this one never was, its caller gets the error.
  assert((await b.response.then(() => undefined, (e) => e)) instanceof Error);
  assertEquals(parseRst(srv.of(FrameType.RST_STREAM, 3)[0]), ErrorCode.PROTOCOL_ERROR);
  assert(!conn.closed);
  conn.destroy();
});

Deno.test("our GOAWAY (a retired credential): in-flight streams finish, then the connection closes", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const out = send(conn);
  conn.goaway();
  assertEquals(parseGoaway(srv.of(FrameType.GOAWAY)[0]).code, ErrorCode.NO_ERROR);
  assertEquals(conn.capacity, 0);
  srv.push(srv.headers(1, [[":status", "200"], ["content-length", "2"]]));
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, enc.encode("ok")));
  assertEquals(await body(await out.response), "ok");
  await until("socket ended", () => srv.ended);
  conn.destroy();
});

Deno.test("cancel resets only that stream; the server's later DATA for it is credited to the connection", async () => {
  const { srv, conn } = connect({ connectionWindow: 65_535 });
  await conn.ready;
  const a = send(conn);
  srv.push(srv.headers(1, [[":status", "200"]]));
  await a.response;
  a.cancel();
  assertEquals(parseRst(srv.of(FrameType.RST_STREAM, 1)[0]), ErrorCode.CANCEL);
  // Frames in flight for the cancelled stream still use the connection window; it is given back.
  for (let i = 0; i < 4; i++) srv.push(encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(16_000)));
  await until("connection WINDOW_UPDATE", () => srv.of(FrameType.WINDOW_UPDATE, 0).length > 0);
  const b = send(conn);
  srv.push(srv.headers(3, [[":status", "204"]], Flag.END_HEADERS | Flag.END_STREAM));
  assertEquals((await b.response).statusCode, 204);
  conn.destroy();
});

Deno.test("a small answer of known length is handed over only whole; a connection lost before then is an error", async () => {
  const { srv, conn } = connect();
  await conn.ready;
  const a = send(conn);
  let answered = false;
  a.response.then(() => (answered = true), () => {});
  srv.push(srv.headers(1, [[":status", "200"], ["content-length", "4"]]));
  srv.push(encodeFrame(FrameType.DATA, 0, 1, enc.encode("ab")));
  await new Promise((r) => setTimeout(r, 20));
  assert(!answered, "not handed over half-way");
  srv.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, enc.encode("cd")));
  const res = await a.response;
  assert(res.complete);
  assertEquals(dec.decode(res.readWhole()), "abcd");
  // Cut half-way: the caller gets an error (retryable by the pool, or the cache answers).
  const b = send(conn);
  srv.push(srv.headers(3, [[":status", "200"], ["content-length", "4"]]));
  srv.push(encodeFrame(FrameType.DATA, 0, 3, enc.encode("ab")));
  srv.sock.destroy();
  assert((await b.response.then(() => undefined, (e) => e)) instanceof Error);
});

Deno.test("a server that floods PINGs and stops reading: the unsent bytes are bounded, the connection given up", async () => {
  let taken = 0;
  // Takes the preface and SETTINGS, then never takes another byte.
  const sock = new Duplex({
    read() {},
    write(_c: Uint8Array, _e, cb) {
      if (++taken <= 2) cb();
    },
  });
  const conn = new H2Connection(sock, { settingsTimeoutMs: 5_000 });
  sock.push(encodeSettings([[Setting.MAX_CONCURRENT_STREAMS, 10]]));
  await conn.ready;
  const ping = encodePing(enc.encode("flooding"));
  for (let i = 0; i < 100_000 && !conn.closed; i++) sock.push(ping);
  await until("connection given up", () => conn.closed);
  assert(sock.writableLength <= 1024 * 1024 + 64, `unsent bytes: ${sock.writableLength}`);
});
