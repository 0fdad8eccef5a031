/**
 * The simulated apiserver's wire modes: the write plans are exact (which bytes, in which pieces,
 * after which delays), the relay's HTTP reader frames messages identically however the bytes are
 * split, and over a real TLS connection the client receives each planned piece on its own (the
 * relay's delays are held by the test, so nothing depends on timing).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import { gunzipSync } from "node:zlib";
import {
  type MessageHead,
  MessageReader,
  parseHead,
  type ReadEvent,
} from "./support/apiserver/http_reader.ts";
import { type Piece, planAnswer, planStreamData, WIRE_MODES } from "./support/apiserver/wire_modes.ts";
import { WireRelay } from "./support/apiserver/wire_relay.ts";
import { createPki } from "./support/pki.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const HEAD: MessageHead = parseHead(
  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAudit-Id: x\r\nContent-Length: 3000",
);
const body = (n: number) => enc.encode("{" + "x".repeat(n - 2) + "}");
const ctx = { acceptGzip: false, bodyless: false, framing: "length" as const };
const text = (p: Piece) => dec.decode(p.bytes);
const join = (ps: Piece[]) => {
  const out = new Uint8Array(ps.reduce((n, p) => n + p.bytes.length, 0));
  let o = 0;
  for (const p of ps) out.set(p.bytes, o), o += p.bytes.length;
  return out;
};

/** Reads one whole response back from the planned bytes. */
function readBack(ps: Piece[]): { head: MessageHead; body: Uint8Array; ended: boolean } {
  const evs = new MessageReader().push(join(ps));
  const head = evs.find((e) => e.type === "head") as { head: MessageHead };
  const data = evs.filter((e) => e.type === "data").map((e) => (e as { bytes: Uint8Array }).bytes);
  return {
    head: head.head,
    body: join(data.map((bytes) => ({ delayMs: 0, bytes }))),
    ended: evs.some((e) => e.type === "end"),
  };
}

Deno.test("gentle: head and body in one write with Content-Length", () => {
  const b = body(3000);
  const ps = planAnswer(HEAD, b, WIRE_MODES.gentle, ctx);
  assertEquals(ps.length, 1);
  assert(text(ps[0]).startsWith("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAudit-Id: x\r\n"));
  assertEquals(readBack(ps).body, b);
});

Deno.test("split: the head alone, the body 40 ms later", () => {
  const b = body(3000);
  const ps = planAnswer(HEAD, b, WIRE_MODES.split, ctx);
  assertEquals(ps.map((p) => p.delayMs), [0, 40]);
  assert(text(ps[0]).endsWith("Content-Length: 3000\r\n\r\n"), text(ps[0]));
  assertEquals(ps[1].bytes, b);
});

Deno.test("dribble: the body in 512-byte segments 3 ms apart, large bodies in at most 64", () => {
  const b = body(3000);
  const ps = planAnswer(HEAD, b, WIRE_MODES.dribble, ctx);
  assertEquals(ps.map((p) => p.bytes.length).slice(1), [512, 512, 512, 512, 512, 440]);
  assertEquals(ps.map((p) => p.delayMs), [0, 5, 3, 3, 3, 3, 3]);
  assert(text(ps[0]).endsWith("\r\n\r\n"));
  assertEquals(readBack(ps).body, b);
  const big = body(200_000);
  const bigPs = planAnswer(HEAD, big, WIRE_MODES.dribble, ctx);
  assertEquals(bigPs.length, 1 + 64);
  assertEquals(readBack(bigPs).body, big);
});

Deno.test("nagle: head and all but the last 64 bytes at once, the rest 40 ms later", () => {
  const b = body(3000);
  const ps = planAnswer(HEAD, b, WIRE_MODES.nagle, ctx);
  assertEquals(ps.map((p) => p.delayMs), [0, 40]);
  assertEquals(ps[1].bytes, b.subarray(3000 - 64));
  assertEquals(readBack(ps).body, b);
  // A body shorter than the tail goes entirely in the late segment.
  const tiny = planAnswer(HEAD, body(10), WIRE_MODES.nagle, ctx);
  assertEquals(tiny.map((p) => [p.delayMs, p.bytes.length]), [[0, tiny[0].bytes.length], [40, 10]]);
});

Deno.test("chunked: a Content-Length answer re-framed as chunks, one per write, then the last chunk", () => {
  const b = body(10_000);
  const ps = planAnswer(HEAD, b, WIRE_MODES.chunked, ctx);
  assert(/\r\nTransfer-Encoding: chunked\r\n\r\n$/.test(text(ps[0])), text(ps[0]));
  assert(!/content-length/i.test(text(ps[0])));
  assertEquals(ps.slice(1).map((p) => text(p).split("\r\n")[0]), ["1000", "1000", "710"]);
  assert(text(ps[ps.length - 1]).endsWith("\r\n0\r\n\r\n"));
  const back = readBack(ps);
  assertEquals([back.body, back.ended], [b, true]);
  // An empty body is the last chunk alone.
  assertEquals(text(planAnswer(HEAD, new Uint8Array(0), WIRE_MODES.chunked, ctx)[1]), "0\r\n\r\n");
});

Deno.test("gzip: large answers compressed when accepted, others untouched", () => {
  const big = body(200_000);
  const ps = planAnswer(HEAD, big, WIRE_MODES.gzip, { ...ctx, acceptGzip: true });
  const back = readBack(ps);
  assertEquals(back.head.headers.filter(([k]) => /encoding|vary/i.test(k)), [
    ["Content-Encoding", "gzip"],
    ["Vary", "Accept-Encoding"],
    ["Transfer-Encoding", "chunked"],
  ]);
  assertEquals(new Uint8Array(gunzipSync(back.body)), big);
  for (const [b, accept] of [[big, false], [body(3000), true]] as const) {
    const plain = readBack(planAnswer(HEAD, b, WIRE_MODES.gzip, { ...ctx, acceptGzip: accept }));
    assert(!plain.head.headers.some(([k]) => /content-encoding/i.test(k)));
    assertEquals(plain.body, b);
  }
  // Only 200s are compressed.
  const notFound = parseHead("HTTP/1.1 404 Not Found\r\nContent-Length: 200000");
  const nf = readBack(planAnswer(notFound, big, WIRE_MODES.gzip, { ...ctx, acceptGzip: true }));
  assertEquals(nf.body, big);
});

Deno.test("answers without a body (HEAD, 304) keep their head as the server sent it", () => {
  const ps = planAnswer(HEAD, new Uint8Array(0), WIRE_MODES.dribble, { ...ctx, bodyless: true });
  assertEquals(ps.length, 1);
  assert(text(ps[0]).endsWith("Content-Length: 3000\r\n\r\n"));
});

Deno.test("streamed data (watch events) is dribbled and chunk-framed per segment", () => {
  const ev = enc.encode(JSON.stringify({ type: "ADDED", object: { x: "y".repeat(1100) } }) + "\n");
  const ps = planStreamData(ev, WIRE_MODES.dribble, true, true);
  assertEquals(ps.map((p) => p.delayMs), [5, 3, 3]);
  assertEquals(ps.map((p) => text(p).split("\r\n")[0]), ["200", "200", (ev.length - 1024).toString(16)]);
});

Deno.test("the HTTP reader frames a byte stream identically at every split point", () => {
  const stream = enc.encode(
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n" +
      "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + // answers a HEAD: no body
      "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
  );
  let answer = 0;
  const read = (parts: Uint8Array[]) => {
    answer = 0;
    const r = new MessageReader(() => ++answer === 4);
    const evs: ReadEvent[] = parts.flatMap((p) => r.push(p));
    // Data events are merged, since a split point may cut one in two.
    const out: string[] = [];
    for (const e of evs) {
      const s = e.type === "head"
        ? `head ${e.head.status} ${e.framing}`
        : e.type === "data"
        ? `data ${dec.decode(e.bytes)}`
        : e.type;
      if (s.startsWith("data ") && out[out.length - 1]?.startsWith("data ")) {
        out[out.length - 1] += s.slice(5);
      } else out.push(s);
    }
    return out;
  };
  const whole = read([stream]);
  assertEquals(whole, [
    "head 200 length",
    "data hello",
    "end",
    "head 200 chunked",
    "data abcde",
    "end",
    "head 204 none",
    "end",
    "head 200 none",
    "end",
    "head 404 length",
    "data {}",
    "end",
  ]);
  for (let i = 1; i < stream.length; i++) {
    assertEquals(read([stream.subarray(0, i), stream.subarray(i)]), whole, `split at ${i}`);
  }
  assertEquals(read([...stream].map((b) => new Uint8Array([b]))), whole, "one byte at a time");
});

Deno.test({
  name: "over TLS, each planned piece reaches the client on its own; keep-alive answers stay in order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const pki = await createPki();
    const pair = await pki.server("apiserver");
    // A plain upstream answering like the simulated apiserver: Content-Length bodies, a chunked stream.
    const upstream = http.createServer((req, res) => {
      if (req.url === "/stream") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"type":"ADDED"}\n');
        res.end();
        return;
      }
      const n = Number(new URL(req.url!, "http://x").searchParams.get("n") ?? 3000);
      res.writeHead(200, { "content-type": "application/json", "content-length": String(n) });
      res.end(req.method === "HEAD" ? undefined : body(n));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
    const gates: { ms: number; release: () => void }[] = [];
    let gateWaiter: (() => void) | undefined;
    const relay = new WireRelay({
      cert: pair.certPem,
      key: pair.keyPem,
      ca: pki.caPem,
      targetPort: (upstream.address() as AddressInfo).port,
      register: () => {},
      unregister: () => {},
      sleep: (ms) =>
        new Promise<void>((release) => {
          gates.push({ ms, release });
          gateWaiter?.();
        }),
    });
    await relay.start();
    const sock = tls.connect({ host: "127.0.0.1", port: relay.port, ca: pki.caPem });
    await new Promise<void>((r, j) => sock.once("secureConnect", r).once("error", j));
    let got = new Uint8Array(0);
    let gotWaiter: (() => void) | undefined;
    sock.on("data", (d: Uint8Array) => {
      const n = new Uint8Array(got.length + d.length);
      n.set(got), n.set(d, got.length);
      got = n;
      gotWaiter?.();
    });
    const waitFor = <T>(cond: () => T | undefined, what: string, wake: (f: () => void) => void): Promise<T> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
        let done = false;
        const check = () => {
          if (done) return; // a stale waiter must not consume what a later wait is for
          const v = cond();
          if (v !== undefined) done = true, clearTimeout(timer), resolve(v);
        };
        wake(check);
        check();
      });
    const received = (n: number, what: string) =>
      waitFor(() => (got.length >= n ? true : undefined), `${n} bytes (${what})`, (f) => gotWaiter = f);
    const gate = (what: string) =>
      waitFor(() => gates.shift(), `the relay to wait before ${what}`, (f) => gateWaiter = f);
    // Only what was planned before the gate is there: no byte of what follows it.
    const exactly = async (n: number, what: string) => {
      await received(n, what);
      assertEquals(got.length, n, `${what}: exactly the planned bytes so far`);
    };
    const headLength = () =>
      waitFor(
        () => (dec.decode(got).includes("\r\n\r\n") ? dec.decode(got).indexOf("\r\n\r\n") + 4 : undefined),
        "the whole head",
        (f) => gotWaiter = f,
      );
    try {
      await t.step("split: head, then (after the held delay) the body", async () => {
        relay.setMode("split");
        got = new Uint8Array(0);
        sock.write("GET /?n=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
        const g = await gate("the body");
        assertEquals(g.ms, 40);
        const headBytes = await headLength();
        await exactly(headBytes, "head alone");
        assert(dec.decode(got).endsWith("Content-Length: 3000\r\n\r\n"), dec.decode(got));
        g.release();
        await exactly(headBytes + 3000, "head + body");
      });

      await t.step("dribble: one 512-byte segment per held delay", async () => {
        relay.setMode("dribble");
        got = new Uint8Array(0);
        sock.write("GET /?n=1200 HTTP/1.1\r\nHost: x\r\n\r\n");
        let g = await gate("the first segment");
        const headBytes = await headLength();
        await exactly(headBytes, "head alone");
        for (const [i, total] of [512, 1024, 1200].entries()) {
          g.release();
          await exactly(headBytes + total, `segment ${i + 1}`);
          if (total < 1200) g = await gate(`segment ${i + 2}`);
        }
      });

      await t.step("HEAD, then GETs pipelined on the same connection, answered in order", async () => {
        relay.setMode("gentle");
        got = new Uint8Array(0);
        sock.write(
          "HEAD /?n=77 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=5 HTTP/1.1\r\nHost: x\r\n\r\n" +
            "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=7 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        const events: ReadEvent[] = [];
        let n = 0;
        const reader = new MessageReader(() => ++n === 1);
        let offset = 0;
        await waitFor(
          () => {
            events.push(...reader.push(got.subarray(offset)));
            offset = got.length;
            return events.filter((e) => e.type === "end").length === 4 ? true : undefined;
          },
          "four answers",
          (f) => gotWaiter = f,
        );
        const summary: string[] = [];
        for (const e of events) {
          const s = e.type === "head" ? e.framing : e.type === "data" ? dec.decode(e.bytes) : e.type;
          if (
            e.type === "data" && summary.length &&
            !["end", "none", "length", "chunked"].includes(summary.at(-1)!)
          ) {
            summary[summary.length - 1] += s;
          } else summary.push(s);
        }
        assertEquals(summary, [
          "none",
          "end",
          "length",
          "{xxx}",
          "end",
          "chunked",
          '{"type":"ADDED"}\n',
          "end",
          "length",
          "{xxxxx}",
          "end",
        ]);
      });
    } finally {
      sock.destroy();
      await relay.close();
      await new Promise<void>((r) => upstream.close(() => r()));
      await Deno.remove(pki.dir, { recursive: true });
    }
  },
});
