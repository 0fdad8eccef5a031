import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { WatchFrames, watchFramingOf } from "./watch_frames.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("JSON watch lines come out whole, however the stream is cut", () => {
  const text = '{"type":"ADDED","object":{"a":1}}\n{"type":"MODIFIED","object":{"a":2}}\n{"type":"DE';
  const bytes = enc.encode(text);
  for (let cut = 0; cut <= bytes.byteLength; cut++) {
    const f = new WatchFrames("lines", 1 << 20);
    const out = dec.decode(f.push(bytes.subarray(0, cut))) + dec.decode(f.push(bytes.subarray(cut)));
    assertEquals(out, text.slice(0, text.lastIndexOf("\n") + 1), `cut at ${cut}`);
    assertEquals(f.held, 11);
    assert(f.whole);
    assertEquals(dec.decode(f.flush()), '{"type":"DE');
  }
});

Deno.test("protobuf watch frames come out whole, however the stream is cut", () => {
  const frame = (n: number) => {
    const b = new Uint8Array(4 + n).fill(7);
    new DataView(b.buffer).setUint32(0, n);
    return b;
  };
  const whole = Buffer.concat([frame(3), frame(0), frame(300), frame(70000)]);
  const partial = frame(10).subarray(0, 6);
  const stream = Buffer.concat([whole, partial]);
  for (const cut of [0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 300, 307, 310, 70000, stream.byteLength]) {
    const f = new WatchFrames("length-prefixed", 1 << 20);
    const a = f.push(stream.subarray(0, cut));
    const b = f.push(stream.subarray(cut));
    assertEquals(Buffer.concat([a, b]), whole, `cut at ${cut}`);
    assertEquals(f.held, 6);
  }
});

Deno.test("an event over the bound is passed on as it comes and the stream is no longer whole", () => {
  const f = new WatchFrames("lines", 8);
  assertEquals(dec.decode(f.push(enc.encode("ab\ncdef"))), "ab\n");
  assertEquals(dec.decode(f.push(enc.encode("ghijk"))), "cdefghijk");
  assertEquals(f.held, 0);
  assert(!f.whole);
  assertEquals(dec.decode(f.push(enc.encode("l\nm"))), "l\nm");
});

Deno.test("the framing is known for JSON and protobuf watches only, never for an encoded body", () => {
  assertEquals(watchFramingOf({ "content-type": "application/json" }), "lines");
  assertEquals(watchFramingOf({ "content-type": "application/json;as=Table;v=v1;g=meta.k8s.io" }), "lines");
  assertEquals(
    watchFramingOf({ "content-type": "application/vnd.kubernetes.protobuf;stream=watch" }),
    "length-prefixed",
  );
  assertEquals(watchFramingOf({ "content-type": "application/json", "content-encoding": "gzip" }), undefined);
  assertEquals(watchFramingOf({ "content-type": "application/yaml" }), undefined);
});
