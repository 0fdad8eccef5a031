import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ChunkedDecoder, CloseDecoder, encodeChunk, LAST_CHUNK, LengthDecoder } from "./body.ts";
import { HttpError } from "./errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function chunked(
  text: string | Uint8Array,
): { body: string; end: number | HttpError; done: boolean; dec: ChunkedDecoder } {
  let body = "";
  const d = new ChunkedDecoder((c) => body += dec.decode(c, { stream: true }), 64);
  const end = d.feed(typeof text === "string" ? enc.encode(text) : text, 0);
  return { body, end, done: d.done, dec: d };
}

Deno.test("length decoder takes exactly its bytes and leaves the rest", () => {
  const got: string[] = [];
  const d = new LengthDecoder(5, (c) => got.push(dec.decode(c)));
  assertEquals(d.feed(enc.encode("abc"), 0), 3);
  assertEquals(d.done, false);
  assertEquals(d.feed(enc.encode("XdeNEXT"), 1), 3);
  assertEquals(d.done, true);
  assertEquals(got, ["abc", "de"]);
});

Deno.test("close decoder takes everything until end()", () => {
  const got: string[] = [];
  const d = new CloseDecoder((c) => got.push(dec.decode(c)));
  assertEquals(d.feed(enc.encode("abc"), 1), 3);
  assertEquals(d.done, false);
  d.end();
  assertEquals([d.done, got], [true, ["bc"]]);
});

Deno.test("chunked: sizes, extensions, trailers, and the bytes after the body", () => {
  const r = chunked(
    "5\r\nhello\r\nA;name=val;x\r\n0123456789\r\n0\r\nX-Trailer: t\r\nx-trailer: u\r\n\r\nNEXT",
  );
  assertEquals(r.body, "hello0123456789");
  assertEquals(r.done, true);
  assertEquals(
    r.end,
    enc.encode("5\r\nhello\r\nA;name=val;x\r\n0123456789\r\n0\r\nX-Trailer: t\r\nx-trailer: u\r\n\r\n")
      .length,
  );
  assertEquals(r.dec.trailers["x-trailer"], "t, u");
  const upper = chunked("f\r\n0123456789abcde\r\n0\r\n\r\n");
  assertEquals([upper.body.length, upper.done], [15, true]);
});

Deno.test("chunked: malformed sizes and framing rejected", () => {
  for (
    const text of [
      "-5\r\nhello\r\n0\r\n\r\n",
      "+5\r\nhello\r\n0\r\n\r\n",
      "0x5\r\nhello\r\n0\r\n\r\n",
      " 5\r\nhello\r\n0\r\n\r\n",
      "5 \r\nhello\r\n0\r\n\r\n",
      "\r\nhello\r\n0\r\n\r\n",
      "5\nhello\r\n0\r\n\r\n",
      "5\r\nhello\n0\r\n\r\n",
      "5\r\nhelloX\r\n0\r\n\r\n",
      "5\r\nhello\rX0\r\n\r\n",
      "g\r\n",
      "fffffffffffffff\r\n",
      "00000000000000001\r\n",
      "5;a\u0000b\r\nhello\r\n",
      "5\r\nhello\r\n0\r\nX : y\r\n\r\n",
      "5\r\nhello\r\n0\r\n folded\r\n\r\n",
      "5\r\nhello\r\n0\r\nX: y\n\r\n",
      "5\r\nhello\r\n0\r\n\rX",
      `5\r\nhello\r\n0\r\nX: ${"y".repeat(100)}\r\n\r\n`,
      `5;${"e".repeat(5000)}\r\nhello\r\n0\r\n\r\n`,
    ]
  ) {
    const r = chunked(text);
    assert(r.end instanceof HttpError, `accepted ${JSON.stringify(text.slice(0, 40))}`);
  }
});

Deno.test("chunked: extensions as RFC 9112 §7.1.1 writes them, BWS included; an empty name rejected", () => {
  for (
    const ext of [
      ";a",
      ";a=1",
      " ;a=1", // BWS before ";"
      "\t;a=1",
      "; a = 1", // BWS around the name and "="
      ';a="q\\"x; y"',
      ';a="" ;b',
      ";a;b=c;d",
    ]
  ) {
    const r = chunked(`5${ext}\r\nhello\r\n0${ext}\r\n\r\n`);
    assertEquals([r.body, r.done], ["hello", true], JSON.stringify(ext));
  }
  for (
    const ext of [
      ";", // empty name, as llhttp's strict mode rejects it
      "; ",
      ";;a",
      ";=1",
      ";a=",
      ";a= ",
      ";a b",
      ' ;a="x',
      ';a="x"y',
      ";a=1 ",
      ";a ",
      " ",
      ';a="x\u0001"',
      ";a@b",
    ]
  ) {
    const r = chunked(`5${ext}\r\nhello\r\n0\r\n\r\n`);
    assert(r.end instanceof HttpError, `accepted ${JSON.stringify(ext)}`);
  }
});

Deno.test("chunked: the largest accepted size is a safe integer", () => {
  const r = chunked("fffffffffffff\r\nab");
  assertEquals([r.body, r.done, typeof r.end], ["ab", false, "number"]);
});

Deno.test("encodeChunk and LAST_CHUNK round-trip through the decoder", () => {
  const parts = ["a", "hello world", "x".repeat(300)];
  const bytes = [...parts.map((p) => encodeChunk(enc.encode(p))), encodeChunk(new Uint8Array()), LAST_CHUNK];
  const all = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of bytes) all.set(b, o), o += b.length;
  assertEquals(dec.decode(encodeChunk(enc.encode("hello world"))), "b\r\nhello world\r\n");
  const r = chunked(all);
  assertEquals([r.body, r.done, r.end], [parts.join(""), true, all.length]);
});

Deno.test("the chunked decoder never throws on arbitrary bytes", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet = enc.encode("0123456789abcdefABCDEF;=\r\n \tX:-\u0000");
  for (let n = 0; n < 5000; n++) {
    const bytes = new Uint8Array(Math.floor(rand() * 120));
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = rand() < 0.9 ? alphabet[Math.floor(rand() * alphabet.length)] : Math.floor(rand() * 256);
    }
    const d = new ChunkedDecoder(() => {}, 64);
    let pos = 0;
    for (let k = 0; k < 4 && pos < bytes.length; k++) {
      const r = d.feed(bytes, pos);
      if (typeof r !== "number" || d.done) break;
      pos = r;
    }
  }
});
