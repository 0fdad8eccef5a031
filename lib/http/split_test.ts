/**
 * Randomised: valid pipelined requests and responses, split at every byte boundary (and at many
 * random places at once), must parse exactly as the unsplit stream does.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type Message, MessageReader } from "./message_reader.ts";
import type { RequestHead, ResponseHead } from "./head_parser.ts";

const enc = new TextEncoder();
let seed = 1234567;
const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];

function body(): string {
  const n = pick([0, 1, 7, 40, 300]);
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(32 + Math.floor(rand() * 95));
  return s;
}

function chunkedBody(b: string): string {
  let out = "";
  let i = 0;
  while (i < b.length) {
    const n = 1 + Math.floor(rand() * 50);
    const part = b.slice(i, i + n);
    const ext = rand() < 0.2 ? pick([";ext=1", " ;ext=1", '\t; a = "q\\"x"; b', ";e"]) : "";
    out += `${part.length.toString(16)}${ext}\r\n${part}\r\n`;
    i += n;
  }
  return out + "0\r\n" + (rand() < 0.3 ? "X-Checksum: abc\r\n" : "") + "\r\n";
}

function headers(): string {
  let h = "";
  const n = Math.floor(rand() * 6);
  for (let i = 0; i < n; i++) {
    h += `${pick(["Accept", "X-Custom", "set-cookie", "Cookie", "User-Agent"])}:${pick(["", " "])}${
      pick(["a", "application/json;as=Table;v=v1;g=meta.k8s.io", "b=c", "kubectl/v1.33"])
    }${pick(["", " ", "\t"])}\r\n`;
  }
  return h;
}

function requests(n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) {
    const method = pick(["GET", "POST", "PUT", "DELETE", "PATCH"]);
    const b = method === "GET" ? "" : body();
    const framing = method === "GET"
      ? ""
      : rand() < 0.5
      ? `Content-Length: ${b.length}\r\n`
      : "Transfer-Encoding: chunked\r\n";
    const payload = framing.startsWith("Transfer") ? chunkedBody(b) : b;
    out += `${method} /api/v1/namespaces/ns${i}/pods?watch=${
      i % 2
    } HTTP/1.1\r\nHost: edge\r\n${headers()}${framing}\r\n${payload}`;
  }
  return out;
}

function responses(n: number): { text: string; methods: string[] } {
  let out = "";
  const methods: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = body();
    const kind = pick(["length", "chunked", "head", "204", "100"]);
    if (kind === "100") {
      out += "HTTP/1.1 100 Continue\r\n\r\n";
      methods.push("PUT");
      out += `HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b}`;
    } else if (kind === "head") {
      methods.push("HEAD");
      out += `HTTP/1.1 200 OK\r\nContent-Length: ${b.length + 10}\r\n${headers()}\r\n`;
    } else if (kind === "204") {
      methods.push("DELETE");
      out += `HTTP/1.1 204 No Content\r\n${headers()}\r\n`;
    } else {
      methods.push("GET");
      out += kind === "length"
        ? `HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n${headers()}\r\n${b}`
        : `HTTP/1.1 201 Created\r\n${headers()}Transfer-Encoding: chunked\r\n\r\n${chunkedBody(b)}`;
    }
  }
  // The last one is close-delimited.
  methods.push("GET");
  out += `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${body()}`;
  return { text: out, methods };
}

function summary<H extends RequestHead | ResponseHead>(msgs: Message<H>[]) {
  return msgs.map((m) => ({ head: m.head, body: new TextDecoder().decode(m.body), trailers: m.trailers }));
}

function parse<H extends RequestHead | ResponseHead>(
  kind: "request" | "response",
  bytes: Uint8Array,
  cuts: number[],
  methods: string[],
) {
  // deno-lint-ignore no-explicit-any
  const r = new MessageReader<H>(kind as any, {}, [...methods]);
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c > prev) r.push(bytes.subarray(prev, c));
    prev = c;
  }
  r.end();
  assert(!r.error, `parse error: ${r.error?.message}`);
  return summary(r.messages);
}

for (const kind of ["request", "response"] as const) {
  Deno.test(`${kind}s split at every byte boundary parse as the whole stream does`, () => {
    for (let round = 0; round < 6; round++) {
      let text: string, methods: string[] = [];
      if (kind === "request") text = requests(5);
      else ({ text, methods } = responses(5));
      const bytes = enc.encode(text);
      const whole = parse(kind, bytes, [], methods);
      assertEquals(whole.length, kind === "request" ? 5 : 6 + methods.filter((m) => m === "PUT").length);
      for (let cut = 1; cut < bytes.length; cut++) {
        assertEquals(parse(kind, bytes, [cut], methods), whole, `split at ${cut}`);
      }
      for (let k = 0; k < 50; k++) {
        const cuts = [
          ...new Set(
            Array.from({ length: 1 + Math.floor(rand() * 20) }, () => Math.floor(rand() * bytes.length)),
          ),
        ]
          .sort((a, b) => a - b);
        assertEquals(parse(kind, bytes, cuts, methods), whole, `split at ${cuts}`);
      }
      // One byte at a time.
      assertEquals(parse(kind, bytes, Array.from({ length: bytes.length }, (_, i) => i), methods), whole);
    }
  });
}

Deno.test("the parse of a pipelined stream is what was sent", () => {
  const text = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
    "PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n1\r\nz\r\n0\r\nT: 1\r\n\r\n" +
    "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
  const got = parse("request", enc.encode(text), [], []);
  assertEquals(got.map((m) => [(m.head as RequestHead).method, (m.head as RequestHead).url, m.body]), [
    ["POST", "/a", "abc"],
    ["PUT", "/b", "xyz"],
    ["GET", "/c", ""],
  ]);
  assertEquals(got[1].trailers?.t, "1");
});
