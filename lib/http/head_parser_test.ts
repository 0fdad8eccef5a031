import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { HttpError } from "./errors.ts";
import {
  NEED_MORE,
  type RequestHead,
  RequestHeadParser,
  type ResponseHead,
  ResponseHeadParser,
} from "./head_parser.ts";

const enc = new TextEncoder();

function req(text: string, limits = {}): RequestHead | HttpError {
  const p = new RequestHeadParser(limits);
  const r = p.feed(enc.encode(text));
  if (r instanceof HttpError) return r;
  if (r === NEED_MORE) return new HttpError(0, "incomplete");
  return p.head!;
}

function res(text: string, method = "GET"): ResponseHead | HttpError {
  const p = new ResponseHeadParser();
  p.expect(method);
  const r = p.feed(enc.encode(text));
  if (r instanceof HttpError) return r;
  if (r === NEED_MORE) return new HttpError(0, "incomplete");
  return p.head!;
}

function assertInstanceOf<T>(v: unknown, cls: new (...a: never[]) => T, msg?: string): asserts v is T {
  assert(v instanceof cls, `expected ${cls.name}, got ${JSON.stringify(v)} ${msg ?? ""}`);
}

function ok<T>(v: T | HttpError): T {
  if (v instanceof HttpError) throw new Error(`unexpected error ${v.status}: ${v.message}`);
  return v;
}

function rejected(v: unknown, status = 400): HttpError {
  assertInstanceOf(v, HttpError);
  assertEquals(v.status, status, v.message);
  return v;
}

Deno.test("request head: method, target, version, headers lower-cased, raw order kept", () => {
  const h = ok(
    req("GET /api/v1/pods?limit=5 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-Y:  v  \r\n\r\n"),
  );
  assertEquals(h.method, "GET");
  assertEquals(h.url, "/api/v1/pods?limit=5");
  assertEquals(h.httpVersion, "1.1");
  assertEquals(h.headers.accept, "application/json");
  assertEquals(h.headers["x-y"], "v");
  assertEquals(h.rawHeaders, ["Host", "x", "Accept", "application/json", "X-Y", "v"]);
  assertEquals(h.body, "none");
  assertEquals(h.keepAlive, true);
  assertEquals(h.upgrade, false);
});

Deno.test("request head: duplicates joined as Node does", () => {
  const h = ok(req(
    "GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\nCookie: c=1\r\nCookie: d=2\r\n" +
      "Set-Cookie: s=1\r\nSet-Cookie: t=2\r\nAuthorization: Bearer one\r\nAuthorization: Bearer two\r\n" +
      "User-Agent: u1\r\nUser-Agent: u2\r\n\r\n",
  ));
  assertEquals(h.headers.accept, "a, b");
  assertEquals(h.headers.cookie, "c=1; d=2");
  assertEquals(h.headers["set-cookie"], ["s=1", "t=2"]);
  assertEquals(h.headers.authorization, "Bearer one");
  assertEquals(h.headers["user-agent"], "u1");
});

Deno.test("request head: a __proto__ header is only a header", () => {
  const h = ok(req("GET / HTTP/1.1\r\nHost: x\r\n__proto__: y\r\n\r\n"));
  assertEquals(h.headers["__proto__"], "y");
  assertEquals(Object.getPrototypeOf(h.headers), null);
});

Deno.test("request head: obs-text in values decoded one char per byte", () => {
  const p = new RequestHeadParser();
  const bytes = new Uint8Array([
    ...enc.encode("GET / HTTP/1.1\r\nHost: x\r\nX: a"),
    0xe9,
    ...enc.encode("\r\n\r\n"),
  ]);
  const r = p.feed(bytes);
  assert(typeof r === "number" && r === bytes.length);
  assertEquals(p.head!.headers.x, "a\u00e9");
});

Deno.test("request head: framing by Content-Length and chunked", () => {
  const cl = ok(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"));
  assertEquals([cl.body, cl.contentLength], ["length", 12]);
  const zero = ok(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  assertEquals(zero.body, "none");
  const same = ok(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n"));
  assertEquals(same.contentLength, 7);
  const ch = ok(req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"));
  assertEquals(ch.body, "chunked");
});

Deno.test("request head: keep-alive, close, HTTP/1.0, upgrade, expect", () => {
  assertEquals(ok(req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).keepAlive, false);
  assertEquals(ok(req("GET / HTTP/1.0\r\n\r\n")).keepAlive, false);
  assertEquals(ok(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")).keepAlive, true);
  const up = ok(req("GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"));
  assertEquals(up.upgrade, true);
  assertEquals(ok(req("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")).upgrade, false);
  assertEquals(
    ok(req("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")).expectContinue,
    true,
  );
  rejected(req("PUT / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n"), 417);
});

Deno.test("request head: leading empty lines are skipped", () => {
  assertEquals(ok(req("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")).method, "GET");
});

Deno.test("request head: malformed request lines", () => {
  for (
    const line of [
      "GET  / HTTP/1.1",
      "GET / HTTP/1.1 ",
      "GET /  HTTP/1.1",
      " GET / HTTP/1.1",
      "GET",
      "GET /",
      "G(T / HTTP/1.1",
      "GET /a\u0001b HTTP/1.1",
      "GET /a\u007fb HTTP/1.1",
      "GET / HTTP/1.x",
      "GET / http/1.1",
      "GET / HTTP/11",
      "GET\t/ HTTP/1.1",
    ]
  ) rejected(req(`${line}\r\nHost: x\r\n\r\n`));
  rejected(req("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
  rejected(req("GET / HTTP/2.1\r\nHost: x\r\n\r\n"), 505);
  rejected(req("GET / HTTP/0.9\r\nHost: x\r\n\r\n"), 505);
  rejected(req(`GET /\u00e9 HTTP/1.1\r\nHost: x\r\n\r\n`));
});

Deno.test("request head: Host required once in HTTP/1.1", () => {
  rejected(req("GET / HTTP/1.1\r\n\r\n"));
  rejected(req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
});

Deno.test("request head: invalid header names and values", () => {
  for (
    const field of [
      "Transfer-Encoding : chunked",
      " X: folded",
      "\tX: folded",
      "X Y: z",
      ": empty",
      "NoColon",
      "X(: y",
      "X: a\u0000b",
      "X: a\u007fb",
      "X: a\u0001b",
      "X: a\rb",
      "X\r: y",
    ]
  ) rejected(req(`GET / HTTP/1.1\r\nHost: x\r\n${field}\r\n\r\n`));
});

Deno.test("request head: obs-fold continuation line rejected", () => {
  const e = rejected(req("GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n"));
  assert(/folding/.test(e.message), e.message);
});

Deno.test("request head: bare LF and bare CR rejected", () => {
  rejected(req("GET / HTTP/1.1\nHost: x\n\n"));
  rejected(req("GET / HTTP/1.1\r\nHost: x\n\r\n"));
  rejected(req("GET / HTTP/1.1\r\nHost: x\r\n\n"));
  rejected(req("GET / HTTP/1.1\rHost: x\r\n\r\n"));
  rejected(req("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"));
});

Deno.test("request head: limits give 414 and 431", () => {
  const limits = { maxStartLine: 100, maxHeaderBytes: 400, maxHeaders: 5 };
  rejected(req(`GET /${"a".repeat(200)} HTTP/1.1\r\nHost: x\r\n\r\n`, limits), 414);
  assertEquals(ok(req(`GET /${"a".repeat(80)} HTTP/1.1\r\nHost: x\r\n\r\n`, limits)).method, "GET");
  rejected(req(`GET / HTTP/1.1\r\nHost: x\r\nX: ${"v".repeat(500)}\r\n\r\n`, limits), 431);
  rejected(req(`GET / HTTP/1.1\r\nHost: x\r\n${"A: b\r\n".repeat(6)}\r\n`, limits), 431);
  assertEquals(
    ok(req(`GET / HTTP/1.1\r\nHost: x\r\n${"A: b\r\n".repeat(4)}\r\n`, limits)).headers.a,
    "b, b, b, b",
  );
});

Deno.test("request head: limits apply to a head that never ends (incremental)", () => {
  const p = new RequestHeadParser({ maxStartLine: 100, maxHeaderBytes: 400 });
  assertEquals(p.feed(enc.encode("GET /")), NEED_MORE);
  let r: number | HttpError = NEED_MORE;
  for (let i = 0; i < 20 && r === NEED_MORE; i++) r = p.feed(enc.encode("aaaaaaaaaa"));
  rejected(r, 414);
  const q = new RequestHeadParser({ maxStartLine: 100, maxHeaderBytes: 400 });
  r = q.feed(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
  for (let i = 0; i < 100 && r === NEED_MORE; i++) r = q.feed(enc.encode("X-Long: aaaaaaaaaa\r\n"));
  rejected(r, 431);
});

Deno.test("request head: incremental feeding reports offsets and the started flag", () => {
  const p = new RequestHeadParser();
  assertEquals(p.started, false);
  assertEquals(p.feed(enc.encode("GE")), NEED_MORE);
  assertEquals(p.started, true);
  assertEquals(p.feed(enc.encode("T / HTTP/1.1\r")), NEED_MORE);
  assertEquals(p.feed(enc.encode("\nHost: x\r\n")), NEED_MORE);
  const tail = enc.encode("\r\nNEXT");
  assertEquals(p.feed(tail), 2);
  assertEquals(p.head!.url, "/");
  assertEquals(p.started, false);
});

Deno.test("smuggling: Content-Length and Transfer-Encoding together are rejected", () => {
  rejected(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"));
  rejected(req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"));
  rejected(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"));
});

Deno.test("smuggling: Transfer-Encoding variants are rejected", () => {
  for (
    const te of [
      "Transfer-Encoding: chunked, identity",
      "Transfer-Encoding: identity",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
      "Transfer-Encoding: chunked, chunked",
      "Transfer-Encoding: xchunked",
      "Transfer-Encoding: chunked;q=1",
      'Transfer-Encoding: "chunked"',
      "Transfer-Encoding:",
      "Transfer-Encoding : chunked",
      "Transfer-Encoding\t: chunked",
      " Transfer-Encoding: chunked",
      "Transfer-Encoding: chunk\u0000ed",
      "Transfer-Encoding:\u000bchunked",
      "Transfer-Encoding: \u00a0chunked",
      "Transfer_Encoding: chunked\r\nTransfer-Encoding: x",
    ]
  ) {
    const r = req(`POST / HTTP/1.1\r\nHost: x\r\n${te}\r\n\r\n`);
    assertInstanceOf(r, HttpError, te);
  }
  // A coding before chunked is well-formed but not something we decode.
  rejected(req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  // HTTP/1.0 has no chunked framing.
  rejected(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"));
});

Deno.test("HTTP/1.2 and later minor versions are handled as HTTP/1.1 (RFC 9110 §2.5)", () => {
  for (const v of ["1.2", "1.9"]) {
    const r = ok(req(`GET / HTTP/${v}\r\nHost: x\r\n\r\n`));
    assertEquals([r.httpVersion, r.versionMinor, r.keepAlive], ["1.1", 1, true], v);
    const s = ok(res(`HTTP/${v} 200 OK\r\nContent-Length: 0\r\n\r\n`));
    assertEquals([s.httpVersion, s.statusCode], ["1.1", 200], v);
  }
  // As 1.1: Host is required.
  rejected(req("GET / HTTP/1.2\r\n\r\n"));
});

Deno.test("Content-Length with leading zeros beyond 15 digits is its number", () => {
  const r = ok(req(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${"0".repeat(40)}12\r\n\r\n`));
  assertEquals([r.body, r.contentLength], ["length", 12]);
  const z = ok(req(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${"0".repeat(20)}\r\n\r\n`));
  assertEquals(z.body, "none");
  const same = ok(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0007\r\nContent-Length: 7\r\n\r\n"));
  assertEquals(same.contentLength, 7);
  // Still at most 15 significant digits.
  rejected(req(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 000${"9".repeat(16)}\r\n\r\n`));
  const s = ok(res(`HTTP/1.1 200 OK\r\nContent-Length: ${"0".repeat(30)}5\r\n\r\n`));
  assertEquals([s.body, s.contentLength], ["length", 5]);
});

Deno.test("smuggling: Content-Length variants are rejected", () => {
  for (
    const cl of [
      "Content-Length: 4\r\nContent-Length: 5",
      "Content-Length: 4, 5",
      "Content-Length: 4, 4",
      "Content-Length: -4",
      "Content-Length: +4",
      "Content-Length: 0x4",
      "Content-Length: 4 4",
      "Content-Length: 4.0",
      "Content-Length: 1e3",
      "Content-Length:",
      "Content-Length: 99999999999999999999",
      "Content-Length : 4",
      "Content-Length: \u000b4",
    ]
  ) {
    const r = req(`POST / HTTP/1.1\r\nHost: x\r\n${cl}\r\n\r\n`);
    assertInstanceOf(r, HttpError, cl);
    assertEquals(r.status, 400, cl);
  }
});

Deno.test("response head: status line, reason, framing", () => {
  const r = ok(res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"));
  assertEquals([r.statusCode, r.statusMessage, r.body, r.contentLength, r.keepAlive], [
    200,
    "OK",
    "length",
    5,
    true,
  ]);
  const noReason = ok(res("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"));
  assertEquals([noReason.statusCode, noReason.statusMessage, noReason.body], [404, "", "none"]);
  assertEquals(ok(res("HTTP/1.1 200 Okay then\r\nContent-Length: 1\r\n\r\n")).statusMessage, "Okay then");
  assertEquals(ok(res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")).body, "chunked");
  const close = ok(res("HTTP/1.1 200 OK\r\n\r\n"));
  assertEquals([close.body, close.keepAlive], ["close", false]);
  assertEquals(ok(res("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")).body, "close");
  assertEquals(ok(res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD")).body, "none");
  assertEquals(ok(res("HTTP/1.1 204 No Content\r\n\r\n")).body, "none");
  assertEquals(ok(res("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")).body, "none");
  const cont = ok(res("HTTP/1.1 100 Continue\r\n\r\n"));
  assertEquals([cont.informational, cont.body], [true, "none"]);
  const sw = ok(res("HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n"));
  assertEquals(sw.informational, true);
  assertEquals(ok(res("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n")).keepAlive, false);
  assertEquals(ok(res("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n")).keepAlive, false);
});

Deno.test("response head: malformed and ambiguous answers rejected", () => {
  for (
    const text of [
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 abc OK\r\n\r\n",
      "HTTP/1.1  200 OK\r\n\r\n",
      "HTTP/1.1 200OK\r\n\r\n",
      "HTTP/1.1 099 Low\r\n\r\n",
      "HTTP/1.1 200 O\u0000K\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
      "HTTP/1.1 200 OK\nContent-Length: 1\n\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
      "ICY 200 OK\r\n\r\n",
    ]
  ) assertInstanceOf(res(text), HttpError, JSON.stringify(text));
  rejected(res("HTTP/2.0 200 OK\r\n\r\n"), 505);
});

Deno.test("parsers never throw on arbitrary bytes", () => {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet = enc.encode("GET /HTTP1.0\r\n: \tHost-Lengthchunked,;0123456789abcdefxX\u0000\u007f");
  for (let n = 0; n < 3000; n++) {
    const len = Math.floor(rand() * 200);
    const bytes = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      bytes[i] = rand() < 0.9 ? alphabet[Math.floor(rand() * alphabet.length)] : Math.floor(rand() * 256);
    }
    const p = n % 2 ? new RequestHeadParser() : new ResponseHeadParser();
    let pos = 0;
    for (let k = 0; k < 5 && pos < len; k++) {
      const r = p.feed(bytes, pos);
      if (typeof r !== "number" || r === NEED_MORE) break;
      pos = r;
    }
  }
});
