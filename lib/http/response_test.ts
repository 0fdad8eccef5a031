/**
 * ServerResponse's small-answer path: end(body) puts head and body in one socket write and hands
 * the connection on at once, yet never before the socket has taken the answer.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type ResponseSink, ServerResponse } from "./response.ts";

const FOR = { method: "GET", versionMinor: 1 as const, keepAlive: true };
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A sink that records writes; `hold` keeps each write's done() until release(). */
function recorder(hold = false) {
  const sends: Uint8Array[] = [];
  const finished: Array<[boolean, boolean]> = [];
  const held: Array<() => void> = [];
  const sink: ResponseSink = {
    send(b, done) {
      sends.push(b);
      if (hold) held.push(done);
      else done();
    },
    finished(reusable, close) {
      finished.push([reusable, close]);
    },
    abort() {},
  };
  return { sink, sends, finished, release: () => held.splice(0).forEach((d) => d()) };
}

Deno.test("end(body): head and body in one write, and the connection handed on", () => {
  const r = recorder();
  const res = new ServerResponse(r.sink, FOR);
  res.writeHead(200, { "content-type": "application/json" });
  res.end(new TextEncoder().encode('{"a":1}'));
  assertEquals(r.sends.length, 1);
  const out = text(r.sends[0]);
  assert(out.startsWith("HTTP/1.1 200 OK\r\n"), out);
  assert(/\r\ncontent-length: 7\r\n/i.test(out), out);
  assert(out.endsWith('\r\n\r\n{"a":1}'), out);
  assertEquals(r.finished, [[true, false]]);
});

Deno.test("end(body): a socket that has not taken the answer holds the next request back", async () => {
  const r = recorder(true);
  const res = new ServerResponse(r.sink, FOR);
  res.writeHead(200, { "content-length": "2" });
  res.end("ok");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(r.sends.length, 1);
  assertEquals(r.finished, [], "handed on before the socket drained");
  r.release();
  assertEquals(r.finished, [[true, false]]);
});

Deno.test("end(body): a body longer than its Content-Length is cut and the connection not reused", () => {
  const r = recorder();
  const res = new ServerResponse(r.sink, FOR);
  res.writeHead(200, { "content-length": "3" });
  res.end("abcdef");
  assertEquals(r.sends.length, 1);
  assert(text(r.sends[0]).endsWith("\r\n\r\nabc"));
  assertEquals(r.finished, [[false, false]]);
});

Deno.test("end(body): HEAD keeps the Content-Length and sends no body; Connection: close is honoured", () => {
  const r = recorder();
  const res = new ServerResponse(r.sink, { method: "HEAD", versionMinor: 1, keepAlive: true });
  res.writeHead(200, { "content-length": "5", connection: "close" });
  res.end("hello");
  assertEquals(r.sends.length, 1);
  const out = text(r.sends[0]);
  assert(/\r\ncontent-length: 5\r\n/i.test(out) && /\r\nConnection: close\r\n/.test(out), out);
  assert(out.endsWith("\r\n\r\n"), out);
  assertEquals(r.finished, [[true, true]]);
});

Deno.test("end(body) after a write: chunked, the last chunk at the end", async () => {
  const r = recorder();
  const res = new ServerResponse(r.sink, FOR);
  res.writeHead(200, {});
  res.write("ab");
  res.end("cd");
  await new Promise((resolve) => res.once("finish", resolve));
  const all = r.sends.map(text).join("");
  assert(/transfer-encoding: chunked/i.test(all) && all.endsWith("2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"), all);
  assertEquals(r.finished, [[true, false]]);
});
